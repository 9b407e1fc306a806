// The addon's own counters in /metrics, every one of them: the drain loop's (cycles,
// records, time, ring-full waits, cache merges, attach failures) and the conntrack
// listener's (events, dumps, overruns, resyncs, …). Read from the native stats at each
// scrape, by name, so a counter the addon adds is exported without a change here
// (test/kernel/metrics.test.ts checks that nothing is missing). The kernel-side counters
// and drop reasons have their own metrics in metrics.ts.
import { Counter, Gauge, type Registry } from './prom.ts';

/** A datapath whose stats() has numeric fields and an optional `conntrack` group. */
export interface NativeStatsSource {
  stats(): object;
}

/**
 * The conntrack listener's values that are levels, not running totals: exported as a
 * gauge. Every other native value only grows, so it is a `_total` counter (a counter
 * lets rate() survive a restart; a gauge would not).
 */
export const CONNTRACK_GAUGES: ReadonlySet<string> = new Set(['known', 'rcvbufBytes']);
/** The drain loop's one level (a gauge of its own): the journal's bytes on disk. */
export const DATAPATH_GAUGES: ReadonlySet<string> = new Set(['journalDiskBytes']);

function numbers(o: unknown, set: (k: string, v: number) => void): void {
  if (typeof o !== 'object' || o === null) return;
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number') set(k, v);
}

function conntrackOf(dp: NativeStatsSource): unknown {
  return (dp.stats() as { conntrack?: unknown }).conntrack;
}

/** A counter whose samples are the native totals at the scrape. */
function nativeCounter(
  r: Registry,
  name: string,
  help: string,
  read: (set: (k: string, v: number) => void) => void,
) {
  new Counter({
    name,
    help,
    labelNames: ['counter'],
    registers: [r],
    collect() {
      this.reset();
      read((counter, v) => this.inc({ counter }, v));
    },
  });
}

export function registerNativeMetrics(r: Registry, dp: NativeStatsSource): void {
  nativeCounter(
    r,
    'flowlogd_datapath_total',
    'Datapath drain counters from the addon: drainCycles, drainSleeps (the drain thread went to sleep: nothing to drain), recordsDrained, drainNs, ringFullWaits, cacheMerged, cacheMergeLost, journalBytes, journalErrors, journalSkippedCycles and journalSkippedRecords (cycles not journaled: the journal at StateDirectoryMaxSizeMB), restartDiscarded, attachFailures',
    (set) => numbers(dp.stats(), (k, v) => DATAPATH_GAUGES.has(k) || set(k, v)),
  );
  new Gauge({
    name: 'flowlogd_datapath_state',
    help: "Datapath levels: journalDiskBytes (the drain journal's segments on disk at the last drain cycle's start, so not updated while the drain thread sleeps; 0 without a journal or its bound)",
    labelNames: ['value'],
    registers: [r],
    collect() {
      numbers(dp.stats(), (value, v) => DATAPATH_GAUGES.has(value) && this.set({ value }, v));
    },
  });
  nativeCounter(
    r,
    'flowlogd_conntrack_total',
    'Conntrack listener counters: eventsNew, eventsDestroy, dumped, overruns (netlink ENOBUFS: events lost, a re-dump follows), resyncs, syntheticDestroys, parseErrors, busyNs, reads (wake-ups that found events)',
    (set) => numbers(conntrackOf(dp), (k, v) => CONNTRACK_GAUGES.has(k) || set(k, v)),
  );
  new Gauge({
    name: 'flowlogd_conntrack_state',
    help: 'Conntrack listener levels: known (entries followed now), rcvbufBytes (the netlink socket receive buffer)',
    labelNames: ['value'],
    registers: [r],
    collect() {
      numbers(conntrackOf(dp), (value, v) => CONNTRACK_GAUGES.has(value) && this.set({ value }, v));
    },
  });
}
