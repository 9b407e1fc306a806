// The deny ledger: packets the kernel dropped move from the allow side to its deny twin.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AT_SRC, BACKEND, CLIENT, k0, md, resolverWith, T0, upd } from './helpers.ts';

test('denied packets move from allow to deny; a fully denied connection has no allow record', () => {
  const agg = k0(resolverWith(md));
  // Partly denied: 10 counted by TC, 4 of them dropped afterwards.
  agg.observe(
    upd({
      srcIp: CLIENT,
      dstIp: BACKEND,
      origPackets: 10,
      origBytes: 1000,
      replyPackets: 5,
      replyBytes: 300,
      ...AT_SRC,
    }),
  );
  agg.observe(
    upd({
      srcIp: CLIENT,
      dstIp: BACKEND,
      origPackets: 4,
      origBytes: 400,
      dropReason: 12,
      dropReasonName: 'NETFILTER_DROP',
      initiatorHow: 1,
      ...AT_SRC,
    }),
  );
  // Fully denied (a SYN and its retransmits).
  agg.observe(
    upd({ srcIp: CLIENT, srcPort: 40009, dstIp: BACKEND, origPackets: 3, origBytes: 180, ...AT_SRC }),
  );
  agg.observe(
    upd({
      srcIp: CLIENT,
      srcPort: 40009,
      dstIp: BACKEND,
      origPackets: 3,
      origBytes: 180,
      dropReason: 12,
      dropReasonName: 'NETFILTER_DROP',
      initiatorHow: 1,
      ...AT_SRC,
    }),
  );
  const rs = agg.flush(T0 + 10_000);
  const allow = rs.filter((r) => r.action === 'allow');
  const deny = rs.filter((r) => r.action === 'deny');
  assert.equal(allow.length, 1);
  assert.deepEqual([allow[0]!.packets_out, allow[0]!.bytes_out, allow[0]!.packets_in], [6, 600, 5]);
  assert.equal(allow[0]!.drop_reason, undefined);
  assert.equal(deny.length, 2);
  for (const d of deny) {
    assert.equal(d.drop_reason, 'NETFILTER_DROP');
    assert.equal(d.reporter, 'src');
    assert.equal(d.source_ip, CLIENT);
  }
  assert.deepEqual(deny.map((d) => d.packets_out).sort(), [3, 4]);
  const line = [...agg.flushLineIterator(T0 + 20_000)];
  assert.ok(line.every((l) => !l.includes('drop_reason') || l.includes('"action":"deny"')));
});

test('a drop drained before the allowed count of the same packets still moves them, across a flush', () => {
  const agg = k0(resolverWith(md));
  const syn = { srcIp: CLIENT, srcPort: 40077, dstIp: BACKEND, origPackets: 2, origBytes: 120, ...AT_SRC };
  // The drop program's drain carries the two SYNs first...
  agg.observe(upd({ ...syn, dropReason: 12, dropReasonName: 'NETFILTER_DROP', initiatorHow: 1 }));
  const r1 = agg.flush(T0 + 10_000);
  assert.deepEqual(
    r1.map((r) => [r.action, r.packets_out]),
    [['deny', 2]],
  );
  // ...TC's count of the same two SYNs comes with the next drain: nothing was allowed.
  agg.observe(upd(syn));
  const r2 = agg.flush(T0 + 20_000);
  assert.equal(r2.filter((r) => r.action === 'allow').length, 0, 'no allow record for blocked packets');
});
