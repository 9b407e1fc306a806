// The daemon's Prometheus metrics: gauges read the datapath, aggregator and sinks at each
// scrape (nothing is copied between scrapes); counters are bumped by the flush.
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { SinkStats } from '../export/sink.ts';
import { registerNativeMetrics } from './native-metrics.ts';

/** What the gauges read at a scrape. */
export interface MetricSources {
  readonly datapath: {
    stats(): { kernel: Record<string, unknown>; dropReasons?: Record<string, number> };
    interfaces(): readonly unknown[];
  };
  readonly aggregator: { stats(): { lifecycleSource: string } & object };
  readonly sink: { statsBySink(): Record<string, SinkStats> };
}

export interface FlushMetrics {
  readonly flushes: Counter;
  readonly lines: Counter;
  readonly flushSeconds: Histogram;
}

const SINK_COUNTERS = ['writtenLines', 'writtenBytes', 'droppedLines', 'queuedLines', 'rotations'] as const;

export function registerMetrics(
  r: Registry,
  { datapath: dp, aggregator: agg, sink }: MetricSources,
): FlushMetrics {
  registerNativeMetrics(r, dp);
  new Gauge({
    name: 'flowlogd_datapath_kernel_events',
    help: 'Kernel-side failure and event counters of the flow programs (parse failures, failed inserts by errno, lost packets/bytes, conntrack lookups)',
    labelNames: ['counter'],
    registers: [r],
    collect() {
      for (const [k, v] of Object.entries(dp.stats().kernel))
        if (typeof v === 'number') this.set({ counter: k }, v);
    },
  });
  new Gauge({
    name: 'flowlogd_lifecycle_source',
    help: 'Where connection lifecycle comes from: 1 for the source in use (conntrack, or tcp-flags+idle)',
    labelNames: ['source'],
    registers: [r],
    collect() {
      const now = agg.stats().lifecycleSource;
      for (const source of ['conntrack', 'tcp-flags+idle']) this.set({ source }, source === now ? 1 : 0);
    },
  });
  new Gauge({
    name: 'flowlogd_kernel_drops',
    help: 'Packets the kernel dropped, by drop reason (policy drops also become deny records; the rest are only counted here)',
    labelNames: ['reason'],
    registers: [r],
    collect() {
      for (const [reason, n] of Object.entries(dp.stats().dropReasons ?? {})) this.set({ reason }, n);
    },
  });
  new Gauge({
    name: 'flowlogd_datapath_attached_interfaces',
    help: 'Interfaces the flow programs are attached to',
    registers: [r],
    collect() {
      this.set(dp.interfaces().length);
    },
  });
  new Gauge({
    name: 'flowlogd_aggregator',
    help: 'Aggregator counters (connections tracked, updates, dropped when the table was full, ...)',
    labelNames: ['counter'],
    registers: [r],
    collect() {
      for (const [k, v] of Object.entries(agg.stats()))
        if (typeof v === 'number') this.set({ counter: k }, v);
    },
  });
  new Gauge({
    name: 'flowlogd_sink',
    help: 'Flow log sink counters by sink (written, dropped, queued lines, healthy)',
    labelNames: ['sink', 'counter'],
    registers: [r],
    collect() {
      for (const [name, s] of Object.entries(sink.statsBySink())) {
        for (const k of SINK_COUNTERS) this.set({ sink: name, counter: k }, s[k]);
        this.set({ sink: name, counter: 'healthy' }, s.healthy ? 1 : 0);
      }
    },
  });
  new Counter({
    name: 'flowlogd_policy_verdict_mismatch_total',
    help: 'Connections whose evaluated policy verdict disagrees with the kernel, once each, by the direction the reporter enforces: kernel="dropped" (a policy drop the policies allow) or "allowed" (delivered, the policies deny)',
    labelNames: ['direction', 'kernel'],
    registers: [r],
    collect() {
      const s = agg.stats() as Partial<Record<string, unknown>>;
      this.reset();
      for (const [direction, d] of [
        ['ingress', 'Ingress'],
        ['egress', 'Egress'],
      ] as const)
        for (const [kernel, k] of [
          ['allowed', 'KernelAllowed'],
          ['dropped', 'KernelDropped'],
        ] as const) {
          const v = s[`policyMismatch${d}${k}`];
          this.inc({ direction, kernel }, typeof v === 'number' ? v : 0);
        }
    },
  });
  return {
    flushes: new Counter({ name: 'flowlogd_flushes_total', help: 'Flushes written', registers: [r] }),
    lines: new Counter({
      name: 'flowlogd_flow_log_records_total',
      help: 'Flow log records produced',
      registers: [r],
    }),
    flushSeconds: new Histogram({
      name: 'flowlogd_flush_duration_seconds',
      help: "Time per flush: draining the kernel, the interval's lines, and the sinks writing them (each batch waited for up to 5 s, after which a stalled sink's queue takes the rest)",
      buckets: [0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [r],
    }),
  };
}

/** Serves `registry` on /metrics; a failed collection answers 500 and is logged. */
export async function serveMetrics(registry: Registry, port: number, log: Logger): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
    } catch (err) {
      // A scrape must never take the daemon down.
      log.error({ err }, 'metrics collection failed');
      res.writeHead(500).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, resolve);
  });
  log.info({ port }, 'metrics on /metrics');
  return server;
}
