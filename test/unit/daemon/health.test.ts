import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mock, test } from 'node:test';
import { Health } from '../../../src/daemon/health.ts';

test('health: /readyz follows its conditions, /livez the drain cycles; other paths are not answered', async () => {
  let now = 1_000_000;
  const h = new Health({ now: () => now, maxCycleAgeMs: 30_000 });
  let attached = 0;
  let synced = false;
  h.readyWhen('datapath', () => (attached > 0 ? null : 'attached to no interface'));
  h.readyWhen('informers', () => (synced ? null : 'pods not synced'));
  const server = createServer((req, res) => {
    if (!h.handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const get = async (p: string) => {
    const r = await fetch(base + p);
    return [r.status, await r.text()] as const;
  };
  try {
    assert.deepEqual(await get('/readyz'), [
      503,
      '[-] datapath: attached to no interface\n[-] informers: pods not synced\nfailed\n',
    ]);
    attached = 2;
    assert.deepEqual(await get('/readyz'), [503, '[-] informers: pods not synced\nfailed\n']);
    synced = true;
    assert.deepEqual(await get('/readyz'), [200, 'ok\n']);

    assert.deepEqual(await get('/livez'), [200, 'ok\n']);
    now += 29_000;
    assert.deepEqual(await get('/livez'), [200, 'ok\n']);
    now += 2000; // 31 s without a drain cycle: the drain thread is stuck
    assert.deepEqual(await get('/livez'), [503, '[-] no drain cycle for 31 s\nfailed\n']);
    h.cycle();
    assert.deepEqual(await get('/livez'), [200, 'ok\n']);
    assert.equal((await get('/metrics'))[0], 404);
  } finally {
    server.close();
  }
});

test('health: a blocked event loop fails /livez once its heartbeat is late', async () => {
  let now = 0;
  const h = new Health({ now: () => now, maxLoopLagMs: 10_000 });
  h.start();
  try {
    assert.deepEqual(h.live(), []);
    now += 12_000; // the 1 s heartbeat has not run for 12 s
    h.cycle();
    assert.deepEqual(h.live(), ['event loop blocked for 11 s']);
  } finally {
    h.stop();
  }
});

test('health: the heartbeat runs only while drain cycles come; a sleeping drain thread is live', () => {
  mock.timers.enable({ apis: ['setInterval'] });
  let now = 0;
  let asleep = false;
  const h = new Health({ now: () => now, maxCycleAgeMs: 30_000 });
  h.drainMaySleep(() => asleep);
  const tick = (ms: number) => {
    for (let i = 0; i < ms / 1000; i++) {
      now += 1000;
      mock.timers.tick(1000);
    }
  };
  try {
    h.start();
    assert.equal(h.beating, true);
    h.cycle();
    tick(2000);
    assert.equal(h.beating, true, 'a cycle 2 s ago');
    tick(1000);
    assert.equal(h.beating, false, 'no cycle for 3 s: the datapath went quiet, no more beats');
    tick(60_000);
    asleep = true;
    assert.deepEqual(h.live(), [], 'no cycle for a minute, but the drain thread sleeps');
    asleep = false;
    assert.deepEqual(h.live(), ['no drain cycle for 63 s']);
    h.cycle();
    assert.equal(h.beating, true, 'the next cycle starts it again');
    tick(1000);
    assert.deepEqual(h.live(), []);
  } finally {
    h.stop();
    mock.timers.reset();
  }
});
