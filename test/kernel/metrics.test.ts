// Every counter the addon reports is in /metrics (issue 14 item 8): conntrack overruns
// and resyncs were only in the native stats, and an overrun's only trace was a log line.
// The keys come from a real datapath with conntrack and drop tracing on, so a counter
// added to the addon later fails this test until it is exported.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { registerMetrics } from '../../src/daemon/metrics.ts';
import { CONNTRACK_GAUGES, DATAPATH_GAUGES } from '../../src/daemon/native-metrics.ts';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import type { Lab, Pod } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

/** Every numeric leaf of the native stats as a dotted path (kernel.x, conntrack.overruns, …). */
function leaves(o: Record<string, unknown>, prefix = ''): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'number') out.set(prefix + k, v);
    else if (typeof v === 'object' && v !== null && k !== 'dropReasons')
      for (const [kk, vv] of leaves(v as Record<string, unknown>, `${prefix}${k}.`)) out.set(kk, vv);
  }
  return out;
}

describe('metrics', { skip: kernelSkipReason() }, () => {
  let lab: Lab;
  let pod: Pod;
  suiteLab((l) => {
    lab = l;
    pod = lab.addPod({ namespace: 'm', name: `metrics-${lab.prefix}` });
  });

  test('every native datapath and conntrack counter is exported, with its value', async () => {
    const dp = new FlowDatapath(
      { interfaces: [pod.hostIf], drainIntervalMs: 200, conntrackEvents: true, dropTracing: true },
      () => {},
      () => {},
    );
    try {
      await dp.sync();
      const registry = new Registry();
      registerMetrics(registry, {
        datapath: dp,
        aggregator: { stats: () => ({ lifecycleSource: 'conntrack' }) },
        sink: { statsBySink: () => ({}) },
      });
      const native = leaves(dp.stats() as unknown as Record<string, unknown>);
      // The conntrack listener's counters are there, so the check covers them.
      for (const k of ['conntrack.overruns', 'conntrack.resyncs', 'conntrack.eventsNew', 'drainCycles'])
        assert.ok(native.has(k), `native stats have ${k}: ${[...native.keys()].join(', ')}`);
      // Exported as {counter="<name>"} samples of the metric of the stats' group.
      const GROUP_METRIC: Record<string, string> = {
        kernel: 'flowlogd_datapath_kernel_events_total',
        conntrack: 'flowlogd_conntrack_total',
        '': 'flowlogd_datapath_total',
      };
      const exported = new Map<string, number>();
      for (const m of await registry.getMetricsAsJSON()) {
        for (const v of m.values as { labels: Record<string, string | number>; value: number }[]) {
          const name = v.labels.counter ?? v.labels.value;
          if (typeof name === 'string') exported.set(`${m.name}{${name}}`, v.value);
        }
      }
      const sampleOf = (leaf: string): string => {
        const dot = leaf.lastIndexOf('.');
        const group = leaf.slice(0, Math.max(0, dot));
        const key = leaf.slice(dot + 1);
        if (group === 'conntrack' && CONNTRACK_GAUGES.has(key)) return `flowlogd_conntrack_state{${key}}`;
        if (group === '' && DATAPATH_GAUGES.has(key)) return `flowlogd_datapath_state{${key}}`;
        return `${GROUP_METRIC[group]}{${key}}`;
      };
      const missing = [...native.keys()].filter((k) => !exported.has(sampleOf(k)));
      assert.deepEqual(missing, [], `not in /metrics: ${missing.join(', ')}`);
      // Values are the native ones at the scrape (counters only grow between the reads;
      // gauges such as conntrack.known may move either way).
      const again = leaves(dp.stats() as unknown as Record<string, unknown>);
      for (const k of ['conntrack.overruns', 'conntrack.resyncs', 'attachFailures', 'kernel.insertE2big']) {
        const v = exported.get(sampleOf(k))!;
        assert.ok(v >= native.get(k)! && v <= again.get(k)!, `${sampleOf(k)} = ${v}`);
      }
    } finally {
      await dp.stop();
      dp.close();
    }
  });
});
