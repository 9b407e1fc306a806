import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { labResultSchema } from '../../../src/bench/schema.ts';
import { median, pairRatios, type RunSample, roundOrder, summarize } from '../../../src/bench/stats.ts';

const recorded = labResultSchema.parse(
  JSON.parse(readFileSync(new URL('./fixtures/lab-quick.json', import.meta.url), 'utf8')),
);

test('median: middle value, mean of the two middle ones, null for nothing; non-finite values ignored', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.equal(median([]), null);
  assert.equal(median([Number.NaN, 2, Number.POSITIVE_INFINITY, 4]), 3);
});

test('round order: each round starts one variant later, so every variant takes every position once', () => {
  assert.deepEqual(roundOrder(3, 4), [
    [0, 1, 2],
    [1, 2, 0],
    [2, 0, 1],
    [0, 1, 2],
  ]);
  assert.deepEqual(roundOrder(1, 2), [[0], [0]]);
  const five = roundOrder(5, 5);
  for (let pos = 0; pos < 5; pos++)
    assert.deepEqual(five.map((r) => r[pos]).sort(), [0, 1, 2, 3, 4], `position ${pos}`);
  assert.throws(() => roundOrder(0, 3), /variants=0/);
  assert.throws(() => roundOrder(3, 1.5), /rounds=1.5/);
});

test('pair ratios: round by round, skipping rounds where either side is missing or the baseline is 0', () => {
  assert.deepEqual(pairRatios([90, 50, null, 30], [100, 0, 80, 40]), [0.9, 0.75]);
  assert.throws(() => pairRatios([1], [1, 2]), /1 rounds against 2/);
});

function sample(
  round: number,
  variant: string,
  pps: number,
  ns: number | null,
  cpu: number | null = null,
): RunSample {
  return {
    round,
    variant,
    pps,
    packets: pps * 2,
    seconds: 2,
    nsPerRun: ns,
    nsPerRunByHook: {},
    collectorCpuSeconds: cpu,
    collectorRssBytes: cpu === null ? null : 50 * 2 ** 20,
    cacheHitRate: null,
    generator: { sent: 0, received: 0, errors: 0 },
  };
}

test("summary: medians of pair ratios, not ratios of medians, and ns above the same round's empty program", () => {
  // The VM switches speed between rounds 0-1 and 2: the pair ratios stay put.
  const samples = [
    sample(0, 'none', 1000, null),
    sample(0, 'empty', 970, 30),
    sample(0, 'flowlogd', 950, 50, 0.2),
    sample(1, 'none', 1100, null),
    sample(1, 'empty', 1078, 32),
    sample(1, 'flowlogd', 1045, 55, 0.4),
    sample(2, 'none', 500, null),
    sample(2, 'empty', 490, 28),
    sample(2, 'flowlogd', 480, 44, 0.1),
  ];
  const [none, empty, flowlogd] = summarize(samples, ['none', 'empty', 'flowlogd']);
  assert.equal(none!.ratioToNone, 1);
  assert.equal(none!.medianNsPerRun, null);
  assert.equal(empty!.ratioToNone, 0.98); // 0.97, 0.98, 0.98
  assert.equal(empty!.medianNsPerRun, 30);
  assert.equal(empty!.nsAboveEmpty, null);
  assert.equal(flowlogd!.medianPps, 950);
  assert.equal(flowlogd!.ratioToNone, 0.95); // 0.95, 0.95, 0.96
  assert.equal(flowlogd!.ratioToEmpty?.toFixed(4), (950 / 970).toFixed(4)); // 0.9794, 0.9694, 0.9796
  assert.equal(flowlogd!.medianNsPerRun, 50);
  assert.equal(flowlogd!.nsAboveEmpty, 20); // 20, 23, 16
  // CPU s per million packets: 0.2 / 0.0019 = 105.26, 0.4 / 0.00209 = 191.4, 0.1 / 0.00096 = 104.17
  assert.equal(flowlogd!.cpuSecondsPerMillionPackets!.toFixed(4), (0.2 / 0.0019).toFixed(4));
  assert.equal(flowlogd!.collectorCpuShare, 0.1);
  assert.equal(flowlogd!.medianRssMiB, 50);
  assert.equal(flowlogd!.runs, 3);
});

test('summary of a recorded run reproduces the summary it printed', () => {
  for (const s of recorded.scenarios) {
    assert.deepEqual(summarize(s.samples, recorded.variants), s.summary, s.name);
  }
  assert.deepEqual(
    recorded.scenarios.map((s) => s.name),
    ['udp-saturate', 'tcp-rr', 'udp-pingpong', 'udp-1024'],
  );
});
