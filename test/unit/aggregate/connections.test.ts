// The connection store: the numbers slab grows, gives slots back and shrinks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AT_SRC, F1, F2, F3, k0, resolverWith, T0, upd } from './helpers.ts';

test('after a spike of short connections ends, the numbers slab shrinks and the survivors keep their counts', () => {
  const a = k0(resolverWith(), { kindForAllowed: 0, idleTimeoutMs: 60_000 });
  const t = (ms: number) => ({ firstSeenMs: ms, lastSeenMs: ms });
  // Ten long-lived TCP connections, then a scan: 20,000 UDP connections that idle out.
  const long = (i: number, bytes: number, ms: number) =>
    upd({
      srcIp: '10.1.0.1',
      dstIp: '10.9.0.1',
      srcPort: 30000 + i,
      origPackets: 1,
      origBytes: bytes,
      ...AT_SRC,
      ...t(ms),
    });
  for (let i = 0; i < 10; i++) a.observe(long(i, 100 + i, T0 + 1000));
  for (let i = 0; i < 20_000; i++)
    a.observe(
      upd({
        srcIp: '10.1.0.1',
        dstIp: `10.8.${i >> 8}.${i & 255}`,
        proto: 17,
        dstPort: 53,
        origPackets: 1,
        ...AT_SRC,
        ...t(F1 - 1000),
      }),
    );
  assert.equal(a.flush(F1).length, 20_010);
  assert.ok(a.stats().connectionSlots >= 20_011);
  for (let i = 0; i < 10; i++) a.observe(long(i, 1000 + i, F1 + 1000));
  const recs = a.flush(F2); // the scan's connections idled out (60 s) and are forgotten
  assert.equal(a.stats().connections, 10);
  assert.equal(a.stats().connectionSlots, 1024, 'back to its first size');
  assert.deepEqual(
    recs.filter((r) => r.proto === 'tcp').map((r) => [r.source_port, r.bytes_out]),
    Array.from({ length: 10 }, (_, i) => [30000 + i, 1000 + i]),
  );
  // The moved slots keep their state (an idle one is still open: its last-seen time moved
  // with it) and go on counting; new connections get fresh slots.
  for (let i = 0; i < 5; i++) a.observe(long(i, 7, F2 + 1000));
  a.observe(long(99, 5, F2 + 1000));
  const next = a.flush(F3);
  assert.deepEqual(
    next.map((r) => [r.source_port, r.bytes_out, r.num_flows_completed]).sort((x, y) => x[0]! - y[0]!),
    [...Array.from({ length: 10 }, (_, i) => [30000 + i, i < 5 ? 7 : 0, 0]), [30099, 5, 0]],
  );
});
