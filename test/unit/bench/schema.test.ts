import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { labChart } from '../../../src/bench/chart.ts';
import { labTable } from '../../../src/bench/report.ts';
import { labResultSchema, liveResultSchema } from '../../../src/bench/schema.ts';

const raw = () => JSON.parse(readFileSync(new URL('./fixtures/lab-quick.json', import.meta.url), 'utf8'));

test('a recorded bench lab JSON matches the schema; a broken one names the field', () => {
  const r = labResultSchema.parse(raw());
  assert.equal(r.scenarios.length, 4);
  assert.deepEqual(r.variants, ['none', 'empty', 'flowlogd']);
  const bad = raw();
  bad.scenarios[1].samples[2].pps = 'fast';
  const res = labResultSchema.safeParse(bad);
  assert.equal(res.success, false);
  assert.deepEqual(res.error!.issues[0]!.path, ['scenarios', 1, 'samples', 2, 'pps']);
  const noKind = raw();
  noKind.kind = 'something-else';
  assert.equal(labResultSchema.safeParse(noKind).success, false);
});

test('a bench live JSON: programs, totals and daemons', () => {
  const live = {
    kind: 'flowlogd-bench-live',
    version: 1,
    startedAt: '2026-12-01T22:00:00.000Z',
    seconds: 10,
    machine: raw().machine,
    programs: [
      {
        id: 7,
        name: 'flowlogd_in',
        hook: 'tc ingress',
        runs: 1000,
        runTimeNs: 50000,
        nsPerRun: 50,
        packetsPerSecond: 100,
        coreShare: 0.000005,
        owners: [1234],
      },
    ],
    total: { runs: 1000, nsPerRun: 50, packetsPerSecond: 100, coreShare: 0.000005 },
    daemons: [{ pid: 1234, cpuSeconds: 0.1, coreShare: 0.01, rssBytes: 1, rssAnonBytes: 1, rssFileBytes: 0 }],
  };
  assert.equal(liveResultSchema.parse(live).programs[0]!.nsPerRun, 50);
  assert.equal(liveResultSchema.safeParse({ ...live, total: { runs: 1 } }).success, false);
});

test('the chart has a bar for every (scenario, variant, panel) with a value, labelled with it', () => {
  const r = labResultSchema.parse(raw());
  const svg = labChart(r);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  const ratios = r.scenarios.flatMap((s) => s.summary.map((v) => v.ratioToNone)).filter((x) => x !== null);
  const ns = r.scenarios.flatMap((s) => s.summary.map((v) => v.medianNsPerRun)).filter((x) => x !== null);
  const bars = svg.match(/<rect x="[\d.]+" y="\d+" width="[\d.]+" height="12"/g) ?? [];
  assert.equal(bars.length, ratios.length + ns.length);
  for (const x of ratios) assert.ok(svg.includes(`>${x!.toFixed(3)}<`), `ratio ${x}`);
  for (const x of ns) assert.ok(svg.includes(`>${x!.toFixed(1)} ns<`), `ns ${x}`);
  for (const s of r.scenarios) assert.ok(svg.includes(`>${s.name}<`));
});

test('the summary table has a row per variant per scenario, with its median pps', () => {
  const r = labResultSchema.parse(raw());
  const table = labTable(r);
  for (const s of r.scenarios) {
    assert.ok(table.includes(`### ${s.name}: ${s.title}`));
    for (const v of s.summary)
      assert.ok(
        table.includes(`| ${v.variant} | ${Math.round(v.medianPps!).toLocaleString('en-US')} |`),
        `${s.name} ${v.variant}`,
      );
  }
});
