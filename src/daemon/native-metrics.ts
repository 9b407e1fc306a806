// The addon's own counters in /metrics, every one of them: the drain loop's (cycles,
// records, time, ring-full waits, cache merges, attach failures) and the conntrack
// listener's (events, dumps, overruns, resyncs, …). Read from the native stats at each
// scrape, by name, so a counter the addon adds is exported without a change here
// (test/kernel/metrics.test.ts checks that nothing is missing). The kernel-side counters
// and drop reasons have their own metrics in metrics.ts.
import { Gauge, type Registry } from 'prom-client';

/** A datapath whose stats() has numeric fields and an optional `conntrack` group. */
export interface NativeStatsSource {
  stats(): object;
}

function numbers(o: unknown, set: (k: string, v: number) => void): void {
  if (typeof o !== 'object' || o === null) return;
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number') set(k, v);
}

export function registerNativeMetrics(r: Registry, dp: NativeStatsSource): void {
  new Gauge({
    name: 'flowlogd_datapath',
    help: 'Datapath drain counters from the addon: drainCycles, recordsDrained, drainNs, ringFullWaits, cacheMerged, cacheMergeLost, attachFailures',
    labelNames: ['counter'],
    registers: [r],
    collect() {
      numbers(dp.stats(), (counter, v) => this.set({ counter }, v));
    },
  });
  new Gauge({
    name: 'flowlogd_conntrack',
    help: 'Conntrack listener counters: eventsNew, eventsDestroy, dumped, overruns (netlink ENOBUFS: events lost, a re-dump follows), resyncs, syntheticDestroys, parseErrors, known (entries followed), rcvbufBytes, busyNs',
    labelNames: ['counter'],
    registers: [r],
    collect() {
      numbers((dp.stats() as { conntrack?: unknown }).conntrack, (counter, v) => this.set({ counter }, v));
    },
  });
}
