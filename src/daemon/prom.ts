// prom-client, the parts the daemon uses, without the package's index. The index loads the
// Pushgateway (http, https, zlib: OpenSSL's start-up, ~6 MiB resident the daemon never
// uses) and collectDefaultMetrics turns on the event loop delay histogram, a timer every
// 10 ms: 100 wake-ups a second in a daemon with nothing to do (BENCHMARKS.md, "Idle and
// steady daemon"). The classes are prom-client's own (the index re-exports these files), so a
// Registry from here and one from 'prom-client' are the same class.
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const lib = createRequire(import.meta.url);

export const Registry = lib('prom-client/lib/registry') as typeof Prom.Registry;
export type Registry = Prom.Registry;
export const Counter = lib('prom-client/lib/counter') as typeof Prom.Counter;
export type Counter<T extends string = string> = Prom.Counter<T>;
export const Gauge = lib('prom-client/lib/gauge') as typeof Prom.Gauge;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export const Histogram = lib('prom-client/lib/histogram') as typeof Prom.Histogram;
export type Histogram<T extends string = string> = Prom.Histogram<T>;

/**
 * prom-client's default metrics (process_*, nodejs_*), each registered by its own module as
 * collectDefaultMetrics does, except the event loop delay histogram (its 10 ms timer).
 * `nodejs_eventloop_lag_seconds` stays: measured at each scrape, as prom-client does, by
 * how long a setImmediate takes to run. The process CPU counters are registered below, not
 * by prom-client's module: that one loads @opentelemetry/api for exemplars (trace ids the
 * daemon has none of): 0.7 MiB of anonymous memory in the running daemon (7 MiB with only
 * pino and prom-client loaded; the rest of it the daemon touches anyway).
 */
const DEFAULT_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  ...(typeof process.getActiveResourcesInfo === 'function' ? ['processResources'] : []),
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
] as const;

export function registerDefaultMetrics(r: Registry): void {
  registerProcessCpu(r);
  for (const name of DEFAULT_METRICS) {
    (lib(`prom-client/lib/metrics/${name}`) as (r: Registry, config: object) => void)(r, {});
  }
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds.',
    registers: [r],
    async collect() {
      const t0 = process.hrtime.bigint();
      await new Promise((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - t0) / 1e9);
    },
  });
}

/**
 * process_cpu_user_seconds_total, process_cpu_system_seconds_total and
 * process_cpu_seconds_total, as prom-client's processCpuTotal registers them (names, help,
 * one collect adding the CPU used since the last scrape to all three), without exemplars.
 */
function registerProcessCpu(r: Registry): void {
  let last = process.cpuUsage();
  const user = new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers: [r],
    collect() {
      const now = process.cpuUsage();
      const u = (now.user - last.user) / 1e6;
      const s = (now.system - last.system) / 1e6;
      last = now;
      user.inc(u);
      system.inc(s);
      total.inc(u + s);
    },
  });
  const system = new Counter({
    name: 'process_cpu_system_seconds_total',
    help: 'Total system CPU time spent in seconds.',
    registers: [r],
  });
  const total = new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers: [r],
  });
}
