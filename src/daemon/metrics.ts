// The daemon's Prometheus metrics: gauges read the datapath, aggregator and sinks at each
// scrape (nothing is copied between scrapes); counters are bumped by the flush.
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { InformerStats } from '../enrich/informers.ts';
import type { SinkStats } from '../export/sink.ts';
import type { Health } from './health.ts';
import { registerNativeMetrics } from './native-metrics.ts';
import { Counter, Gauge, Histogram, type Registry, registerDefaultMetrics } from './prom.ts';

// `import … from 'node:http'` builds http's ES module namespace, which reads every export,
// the lazy ones too (WebSocket, CloseEvent, MessageEvent): that loads Node's bundled undici
// and web streams, ~12 MiB resident that the daemon never uses. require() reads only
// createServer.
const { createServer } = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** What the gauges read at a scrape. */
export interface MetricSources {
  readonly datapath: {
    stats(): { kernel: Record<string, unknown>; dropReasons?: Record<string, number> };
    interfaces(): readonly unknown[];
  };
  readonly aggregator: { stats(): { lifecycleSource: string } & object };
  readonly sink: { statsBySink(): Record<string, SinkStats> };
  /** The Kubernetes informers, by resource (metadata and FelixConfiguration). */
  readonly kubernetes?: { stats(): Record<string, InformerStats> };
}

function registerKubernetesMetrics(r: Registry, k: { stats(): Record<string, InformerStats> }): void {
  new Gauge({
    name: 'flowlogd_kubernetes_objects',
    help: 'Objects in the informer cache, by resource; synced: 1 once its first list was applied; served: 0 when the cluster does not serve it',
    labelNames: ['resource', 'counter'],
    registers: [r],
    collect() {
      for (const [resource, s] of Object.entries(k.stats())) {
        this.set({ resource, counter: 'objects' }, s.objects);
        this.set({ resource, counter: 'synced' }, s.synced ? 1 : 0);
        this.set({ resource, counter: 'served' }, s.served === false ? 0 : 1);
      }
    },
  });
  readCounter(
    r,
    'flowlogd_kubernetes_requests_total',
    'List and watch requests and what they brought, by resource (lists, watches, events, bookmarks, errors)',
    ['resource', 'counter'],
    (set) => {
      for (const [resource, s] of Object.entries(k.stats())) {
        for (const c of ['lists', 'watches', 'events', 'bookmarks', 'errors'] as const)
          set({ resource, counter: c }, s[c]);
      }
    },
  );
}

export interface FlushMetrics {
  readonly flushes: Counter;
  readonly lines: Counter;
  readonly flushSeconds: Histogram;
}

/** Aggregator stats that go up and down; every other number in its stats is a counter. */
const AGGREGATOR_GAUGES: ReadonlySet<string> = new Set([
  'connections',
  'connectionSlots',
  'conntrackEntries',
]);

/**
 * A counter whose value is read from elsewhere at each scrape (the addon's, the
 * aggregator's and the sinks' own monotonic counts): Prometheus sees a counter, so
 * rate() and resets work, without copying every increment here.
 */
function readCounter(
  r: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: (set: (labels: Record<string, string>, v: number) => void) => void,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset();
      read((labels, v) => this.inc(labels, v));
    },
  });
}

export function registerMetrics(
  r: Registry,
  { datapath: dp, aggregator: agg, sink, kubernetes }: MetricSources,
): FlushMetrics {
  registerNativeMetrics(r, dp);
  // process_* and nodejs_* (CPU, resident memory, heap, event loop lag, GC, handles): prom.ts.
  registerDefaultMetrics(r);
  readCounter(
    r,
    'flowlogd_datapath_kernel_events_total',
    'Kernel-side failure and event counters of the flow programs (parse failures, failed inserts by errno, lost packets/bytes, packets and bytes in overflow records, conntrack lookups)',
    ['counter'],
    (set) => {
      for (const [k, v] of Object.entries(dp.stats().kernel))
        if (typeof v === 'number') set({ counter: k }, v);
    },
  );
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
  readCounter(
    r,
    'flowlogd_kernel_drops_total',
    'Packets the kernel dropped, by drop reason name (policy drops also become deny records; the rest are only counted here)',
    ['reason'],
    (set) => {
      for (const [reason, n] of Object.entries(dp.stats().dropReasons ?? {})) set({ reason }, n);
    },
  );
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
    help: 'Aggregator sizes: connections tracked, connection slots, conntrack entries',
    labelNames: ['counter'],
    registers: [r],
    collect() {
      for (const [k, v] of Object.entries(agg.stats()))
        if (typeof v === 'number' && AGGREGATOR_GAUGES.has(k)) this.set({ counter: k }, v);
    },
  });
  readCounter(
    r,
    'flowlogd_aggregator_events_total',
    'Aggregator counters (updates, dropped when the table was full, reoriented, flushes, records, conntrack events and joins, ...)',
    ['counter'],
    (set) => {
      for (const [k, v] of Object.entries(agg.stats()))
        if (typeof v === 'number' && !AGGREGATOR_GAUGES.has(k)) set({ counter: k }, v);
    },
  );
  const sinkCounter = (
    name: string,
    help: string,
    key: 'writtenLines' | 'writtenBytes' | 'droppedLines' | 'rotations',
  ) =>
    readCounter(r, name, help, ['sink'], (set) => {
      for (const [s, st] of Object.entries(sink.statsBySink())) set({ sink: s }, st[key]);
    });
  sinkCounter('flowlogd_sink_written_lines_total', 'Flow log lines a sink wrote', 'writtenLines');
  sinkCounter('flowlogd_sink_written_bytes_total', 'Bytes a sink wrote', 'writtenBytes');
  sinkCounter(
    'flowlogd_sink_dropped_lines_total',
    'Flow log lines a sink dropped (its bounded queue was full)',
    'droppedLines',
  );
  sinkCounter('flowlogd_sink_rotations_total', 'File rotations', 'rotations');
  new Gauge({
    name: 'flowlogd_sink_queued_lines',
    help: 'Flow log lines waiting in a sink queue',
    labelNames: ['sink'],
    registers: [r],
    collect() {
      for (const [s, st] of Object.entries(sink.statsBySink())) this.set({ sink: s }, st.queuedLines);
    },
  });
  new Gauge({
    name: 'flowlogd_sink_healthy',
    help: '1 when a sink is writing, 0 while it retries',
    labelNames: ['sink'],
    registers: [r],
    collect() {
      for (const [s, st] of Object.entries(sink.statsBySink())) this.set({ sink: s }, st.healthy ? 1 : 0);
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
  if (kubernetes) registerKubernetesMetrics(r, kubernetes);
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

/**
 * Serves `registry` on /metrics, and /livez and /readyz from `health`, on `address`
 * (null: every address); a failed collection answers 500 and is logged.
 */
export async function serveMetrics(
  registry: Registry,
  port: number,
  address: string | null,
  log: Logger,
  health?: Health,
): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (health?.handle(req, res)) return;
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
    if (address === null) server.listen(port, resolve);
    else server.listen(port, address, resolve);
  });
  log.info({ port, address }, 'metrics on /metrics, health on /livez and /readyz');
  return server;
}
