// The daemon's default metrics: prom-client's, with the process CPU counters registered by
// src/daemon/prom.ts instead of prom-client's module (which loads @opentelemetry/api).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { Registry, registerDefaultMetrics } from '../../../src/daemon/prom.ts';

const req = createRequire(import.meta.url);
const CPU = [
  'process_cpu_user_seconds_total',
  'process_cpu_system_seconds_total',
  'process_cpu_seconds_total',
];

/** Uses `ms` of user CPU (not of wall time: the suite runs files in parallel). */
function burn(ms: number): void {
  const start = process.cpuUsage().user;
  let x = 0;
  while (process.cpuUsage().user - start < ms * 1000) for (let i = 0; i < 1000; i++) x += Math.sqrt(x + 1);
  assert.ok(x > 0);
}

test('the default metrics load no OpenTelemetry, and the CPU counters add what the process used', async () => {
  const r = new Registry();
  const before = process.cpuUsage();
  registerDefaultMetrics(r);
  burn(60);
  const metrics = await r.getMetricsAsJSON();
  const after = process.cpuUsage();
  assert.deepEqual(
    Object.keys(req.cache).filter((k) => k.includes('@opentelemetry')),
    [],
    'prom-client loaded @opentelemetry/api',
  );
  const value = (name: string) => {
    const m = metrics.find((x) => x.name === name);
    assert.ok(m, name);
    assert.equal(m.type, 'counter');
    assert.equal(m.values.length, 1);
    return m.values[0]!.value;
  };
  const [user, system, total] = CPU.map(value) as [number, number, number];
  // What the process used between registration and the scrape: at least the 60 ms burnt,
  // at most what cpuUsage() counted around the whole window.
  const windowS = (after.user - before.user + after.system - before.system) / 1e6;
  assert.ok(user >= 0.06 && user <= windowS, `user ${user} of ${windowS}`);
  assert.ok(system >= 0 && system <= windowS, `system ${system}`);
  assert.ok(Math.abs(total - (user + system)) < 1e-9, `total ${total} = ${user} + ${system}`);
  // A second scrape adds only what was used since the first.
  burn(30);
  const again = await r.getMetricsAsJSON();
  const total2 = again.find((x) => x.name === 'process_cpu_seconds_total')!.values[0]!.value;
  assert.ok(total2 - total >= 0.03 && total2 - total < 1, `second scrape added ${total2 - total}`);
});

test('the CPU counters have the names, help and type of prom-client’s own', async () => {
  const ours = new Registry();
  registerDefaultMetrics(ours);
  const theirs = new Registry();
  (req('prom-client/lib/metrics/processCpuTotal') as (r: Registry, c: object) => void)(theirs, {});
  const shape = async (r: Registry) =>
    (await r.getMetricsAsJSON())
      .filter((m) => CPU.includes(m.name))
      .map((m) => ({ name: m.name, help: m.help, type: m.type }))
      .sort((a, b) => a.name.localeCompare(b.name));
  const want = await shape(theirs);
  assert.equal(want.length, 3);
  assert.deepEqual(await shape(ours), want);
});
