// Overflow records (src/aggregate/overflow.ts): the packets of connections the kernel map
// had no room for are in the flow logs, so the records' sums still equal the traffic.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import { AT_SRC, F1, F2, F3, metadata, pod, resolverWith, T0, upd } from './helpers.ts';

const overflow = (p: {
  origPackets: number;
  origBytes: number;
  replyPackets: number;
  replyBytes: number;
}) => ({
  ...upd({ srcIp: '', dstIp: '', srcPort: 0, dstPort: 0, proto: 17, family: 4, key: 'x', ...p }),
  overflow: true,
});

describe('overflow records', () => {
  for (const kind of [0, 1, 2, 3] as const) {
    test(`kind ${kind}: one record per direction, local pod to net "overflow", counts and no flows`, () => {
      const md = metadata({ pods: [pod('default', 'client-abc-1', '10.0.0.5', 'client-abc-')] });
      const a = new FlowAggregator({
        nodeName: 'node1',
        resolver: resolverWith(md),
        startTimeMs: T0,
        kindForAllowed: kind,
      });
      // A connection on the interface first: it says whose the interface is.
      a.observe(
        upd({ srcIp: '10.0.0.5', dstIp: '10.0.0.9', proto: 17, ...AT_SRC, origPackets: 1, origBytes: 36 }),
      );
      // Ingress on a pod's veth is what the pod sent.
      a.observe(overflow({ origPackets: 1000, origBytes: 36000, replyPackets: 7, replyBytes: 700 }));
      a.observe(overflow({ origPackets: 24, origBytes: 864, replyPackets: 0, replyBytes: 0 }));
      const recs = a.flush(F1);
      const ovf = recs.filter((r) => r.source_name_aggr === 'overflow' || r.dest_name_aggr === 'overflow');
      assert.equal(ovf.length, 2);
      const out = ovf.find((r) => r.reporter === 'src')!;
      const into = ovf.find((r) => r.reporter === 'dst')!;
      assert.deepEqual(
        [out.packets_out, out.bytes_out, out.packets_in, out.bytes_in, out.num_flows, out.num_flows_started],
        [1024, 36864, 0, 0, 0, 0],
      );
      assert.deepEqual([into.packets_in, into.bytes_in, into.packets_out, into.bytes_out], [7, 700, 0, 0]);
      assert.deepEqual(
        [out.source_type, out.source_name_aggr, out.source_namespace, out.dest_type, out.dest_name_aggr],
        ['wep', 'client-abc-*', 'default', 'net', 'overflow'],
      );
      assert.equal(out.source_ip, kind < 2 ? '10.0.0.5' : null);
      assert.deepEqual([out.dest_ip, out.source_port, out.dest_port, out.proto], [null, null, null, 'udp']);
      assert.deepEqual([into.source_name_aggr, into.dest_name_aggr], ['overflow', 'client-abc-*']);
      const sum = (f: 'packets_out' | 'packets_in') => recs.reduce((s, r) => s + r[f], 0);
      assert.deepEqual([sum('packets_out'), sum('packets_in')], [1025, 7]);
      assert.deepEqual([a.stats().overflowPackets, a.stats().overflowBytes], [1031, 37564]);
      // An interval without overflow has no overflow record; a later one has it again.
      assert.equal(a.flush(F2).filter((r) => r.dest_name_aggr === 'overflow').length, 0);
      a.observe(overflow({ origPackets: 3, origBytes: 108, replyPackets: 0, replyBytes: 0 }));
      const third = a.flush(F3).filter((r) => r.dest_name_aggr === 'overflow');
      assert.deepEqual(
        third.map((r) => [r.packets_out, r.num_flows]),
        [[3, 0]],
      );
    });
  }

  test('before any connection on the interface, its local side is net "unknown"', () => {
    const a = new FlowAggregator({
      nodeName: 'node1',
      resolver: resolverWith(),
      startTimeMs: T0,
      kindForAllowed: 0,
    });
    a.observe(overflow({ origPackets: 5, origBytes: 180, replyPackets: 0, replyBytes: 0 }));
    const [r] = a.flush(F1);
    assert.deepEqual(
      [r!.source_type, r!.source_name_aggr, r!.source_ip, r!.dest_name_aggr, r!.packets_out],
      ['net', 'unknown', null, 'overflow', 5],
    );
  });

  test('a host interface with host endpoints off: not reported, as its connections are not', () => {
    const a = new FlowAggregator({ nodeName: 'node1', resolver: resolverWith(), startTimeMs: T0 });
    a.observe({
      ...overflow({ origPackets: 5, origBytes: 180, replyPackets: 0, replyBytes: 0 }),
      interfaceName: 'eth0',
    });
    assert.deepEqual(a.flush(F1), []);
    assert.equal(a.stats().ignoredHostInterface, 1);
  });
});

test('an overflow update read through getters (the datapath reuses one view): same records', () => {
  const a = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(),
    startTimeMs: T0,
    kindForAllowed: 0,
  });
  const plain = overflow({ origPackets: 5, origBytes: 180, replyPackets: 2, replyBytes: 80 });
  const view = Object.create(
    Object.fromEntries(Object.keys(plain).map((k) => [k, undefined])),
    Object.fromEntries(
      Object.entries(plain).map(([k, v]) => [k, { get: () => v, enumerable: false, configurable: true }]),
    ),
  ) as typeof plain;
  a.observe(view);
  assert.deepEqual(
    a
      .flush(F1)
      .map((r) => [r.proto, r.reporter, r.packets_out, r.bytes_out, r.packets_in, r.bytes_in])
      .sort(),
    [
      ['udp', 'dst', 0, 0, 2, 80],
      ['udp', 'src', 5, 180, 0, 0],
    ],
  );
});

test("an IPv4 overflow record's local side is the interface's last IPv4 address, not a later IPv6 one", () => {
  const a = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(),
    startTimeMs: T0,
    kindForAllowed: 0,
  });
  a.observe(
    upd({ srcIp: '10.0.0.5', dstIp: '10.0.0.9', proto: 17, ...AT_SRC, origPackets: 1, origBytes: 36 }),
  );
  a.observe(upd({ srcIp: 'fe80::1', dstIp: 'ff02::2', proto: 58, ...AT_SRC, origPackets: 1, origBytes: 56 }));
  a.observe(overflow({ origPackets: 4, origBytes: 144, replyPackets: 0, replyBytes: 0 }));
  const [r] = a.flush(F1).filter((x) => x.dest_name_aggr === 'overflow');
  assert.deepEqual([r!.source_ip, r!.packets_out], ['10.0.0.5', 4]);
});
