import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import { Hook, InitiatorHow, TcpFlag } from '../../../src/datapath/types.ts';
import { AT_DST, AT_SRC, F1, F2, F3, k0, metadata, pod, resolverWith, T0, upd } from './helpers.ts';

describe('reporter and orientation', () => {
  const cases = [
    // [interface, hook, firstFromInitiator, expected reporter]
    ['cali1', Hook.ingress, true, 'src'], // pod sent the initiator's packet: pod initiated
    ['cali1', Hook.egress, true, 'dst'], // pod received the initiator's packet
    ['cali1', Hook.ingress, false, 'dst'], // pod sent a reply first: pod is the responder
    ['cali1', Hook.egress, false, 'src'],
    ['eth0', Hook.egress, true, 'src'], // host sent the initiator's packet
    ['eth0', Hook.ingress, true, 'dst'],
  ] as const;
  for (const [iface, hook, fromInit, reporter] of cases) {
    test(`${iface} hook=${hook === Hook.ingress ? 'ingress' : 'egress'} fromInitiator=${fromInit} → ${reporter}`, () => {
      const local = reporter === 'src' ? '10.0.0.5' : '10.0.0.6';
      const a = k0(resolverWith(undefined, [local]), { hostEndpoints: true });
      a.observe(
        upd({
          srcIp: '10.0.0.5',
          dstIp: '10.0.0.6',
          interfaceName: iface,
          firstHook: hook,
          firstFromInitiator: fromInit,
          origPackets: 3,
          origBytes: 300,
          replyPackets: 2,
          replyBytes: 120,
        }),
      );
      const [r] = a.flush(F1);
      assert.ok(r);
      assert.equal(r.reporter, reporter);
      // in = traffic towards the reporting endpoint.
      if (reporter === 'dst')
        assert.deepEqual([r.packets_in, r.bytes_in, r.packets_out, r.bytes_out], [3, 300, 2, 120]);
      else assert.deepEqual([r.packets_in, r.bytes_in, r.packets_out, r.bytes_out], [2, 120, 3, 300]);
    });
  }

  test('host interface: forwarded traffic (local side not a node IP) is counted, not reported', () => {
    const a = k0(resolverWith(undefined, ['192.168.1.10']), { hostEndpoints: true });
    a.observe(upd({ srcIp: '10.0.0.5', dstIp: '8.8.8.8', interfaceName: 'eth0', firstHook: Hook.egress }));
    a.observe(
      upd({ srcIp: '192.168.1.10', dstIp: '8.8.8.8', interfaceName: 'eth0', firstHook: Hook.egress }),
    );
    const recs = a.flush(F1);
    assert.equal(recs.length, 1);
    assert.deepEqual(
      [recs[0]!.source_type, recs[0]!.source_name, recs[0]!.source_name_aggr, recs[0]!.reporter],
      ['hep', 'node1', 'node1', 'src'],
    );
    assert.equal(a.stats().forwarded, 1);
  });

  test('host interface with host endpoints off: ignored and counted', () => {
    const a = k0(resolverWith(undefined, ['192.168.1.10']), { hostEndpoints: false });
    a.observe(upd({ srcIp: '192.168.1.10', dstIp: '8.8.8.8', interfaceName: 'eth0' }));
    assert.deepEqual(a.flush(F1), []);
    assert.equal(a.stats().ignoredHostInterface, 1);
  });

  test('a later update with a surer initiator decision swaps orientation and counters', () => {
    const a = k0();
    // First seen mid-stream: the guess takes the server (10.0.0.9:80) for the initiator.
    a.observe(
      upd({
        key: 'c',
        srcIp: '10.0.0.9',
        dstIp: '10.0.0.1',
        srcPort: 80,
        dstPort: 40000,
        initiatorHow: InitiatorHow.portGuess,
        origPackets: 5,
        origBytes: 5000,
        replyPackets: 1,
        replyBytes: 52,
        ...AT_DST,
        firstFromInitiator: false, // the pod on cali1 (10.0.0.9) first received a packet from 10.0.0.1
      }),
    );
    // Conntrack says 10.0.0.1:40000 initiated.
    a.observe(
      upd({
        key: 'c',
        srcIp: '10.0.0.1',
        dstIp: '10.0.0.9',
        srcPort: 40000,
        dstPort: 80,
        initiatorHow: InitiatorHow.conntrack,
        origPackets: 1,
        origBytes: 52,
        replyPackets: 2,
        replyBytes: 2000,
        ...AT_DST,
      }),
    );
    const [r, ...rest] = a.flush(F1);
    assert.equal(rest.length, 0);
    assert.deepEqual(
      [r!.source_ip, r!.source_port, r!.dest_ip, r!.dest_port, r!.reporter],
      ['10.0.0.1', 40000, '10.0.0.9', 80, 'dst'],
    );
    // Local 10.0.0.9 is the server (dst): in = client→server = 52+52, out = 5000+2000.
    assert.deepEqual([r!.bytes_in, r!.packets_in, r!.bytes_out, r!.packets_out], [104, 2, 7000, 7]);
    assert.equal(a.stats().reoriented, 1);
  });

  test('an equally sure reversed update keeps orientation and maps counters', () => {
    const a = k0();
    a.observe(
      upd({
        key: 'u',
        proto: 17,
        srcIp: '10.0.0.1',
        dstIp: '10.0.0.2',
        srcPort: 5000,
        dstPort: 53,
        initiatorHow: InitiatorHow.firstPacket,
        origBytes: 10,
        origPackets: 1,
      }),
    );
    a.observe(
      upd({
        key: 'u',
        proto: 17,
        srcIp: '10.0.0.2',
        dstIp: '10.0.0.1',
        srcPort: 53,
        dstPort: 5000,
        initiatorHow: InitiatorHow.firstPacket,
        origBytes: 100,
        origPackets: 1,
      }),
    );
    const [r] = a.flush(F1);
    assert.deepEqual([r!.source_ip, r!.source_port, r!.bytes_in, r!.bytes_out], ['10.0.0.1', 5000, 10, 100]);
    assert.equal(a.stats().reoriented, 0);
  });
});

describe('counting across intervals', () => {
  test('a connection spanning three flushes: started, idle with zero bytes, completed', () => {
    const a = k0();
    const c = { srcIp: '10.0.0.1', dstIp: '10.0.0.2' };
    a.observe(upd({ ...c, origPackets: 1, origBytes: 60, origTcpFlags: TcpFlag.SYN }));
    let [r] = a.flush(F1);
    assert.deepEqual(
      [r!.num_flows, r!.num_flows_started, r!.num_flows_completed, r!.bytes_in],
      [1, 1, 0, 60],
    );
    [r] = a.flush(F2); // idle: re-reported with zero bytes
    assert.deepEqual(
      [r!.num_flows, r!.num_flows_started, r!.num_flows_completed, r!.bytes_in, r!.bytes_out, r!.packets_in],
      [1, 0, 0, 0, 0, 0],
    );
    assert.equal(r!.start_time, F1 / 1000);
    a.observe(
      upd({
        ...c,
        origPackets: 1,
        origBytes: 40,
        origTcpFlags: TcpFlag.FIN,
        replyPackets: 1,
        replyBytes: 40,
        replyTcpFlags: TcpFlag.FIN,
        lastSeenMs: F2 + 5,
      }),
    );
    [r] = a.flush(F3);
    assert.deepEqual(
      [r!.num_flows, r!.num_flows_started, r!.num_flows_completed, r!.bytes_in, r!.bytes_out],
      [1, 0, 1, 40, 40],
    );
    assert.deepEqual(a.flush(F3 + 300_000), []);
  });

  test('FIN in one direction only does not complete; RST does', () => {
    const a = k0();
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2', origTcpFlags: TcpFlag.FIN }));
    assert.equal(a.flush(F1)[0]!.num_flows_completed, 0);
    a.observe(
      upd({
        srcIp: '10.0.0.1',
        dstIp: '10.0.0.2',
        replyTcpFlags: TcpFlag.RST | TcpFlag.ACK,
        lastSeenMs: F1 + 1,
      }),
    );
    assert.equal(a.flush(F2)[0]!.num_flows_completed, 1);
  });

  test('UDP ends after the idle timeout; a later packet is a new connection', () => {
    const a = k0(resolverWith(), { idleTimeoutMs: 60_000 });
    const u = { proto: 17, srcIp: '10.0.0.1', dstIp: '10.0.0.2', dstPort: 53, origPackets: 1, origBytes: 70 };
    a.observe(upd({ ...u, lastSeenMs: F1 - 30_000 })); // idle 30 s at F1: still open
    let [r] = a.flush(F1);
    assert.deepEqual([r!.num_flows, r!.num_flows_started, r!.num_flows_completed], [1, 1, 0]);
    [r] = a.flush(F2); // idle since F1-30s ≥ 60 s: completed, zero bytes
    assert.deepEqual([r!.num_flows, r!.num_flows_started, r!.num_flows_completed, r!.bytes_in], [1, 0, 1, 0]);
    a.observe(upd({ ...u, firstSeenMs: F3 - 10_000, lastSeenMs: F3 - 10_000 }));
    [r] = a.flush(F3);
    assert.deepEqual(
      [r!.num_flows, r!.num_flows_started, r!.num_flows_completed, r!.bytes_in],
      [1, 1, 0, 70],
    );
  });

  test('late packets after FIN/RST are counted in the next record without a new start', () => {
    const a = k0();
    const c = { srcIp: '10.0.0.1', dstIp: '10.0.0.2' };
    a.observe(
      upd({
        ...c,
        origTcpFlags: TcpFlag.SYN | TcpFlag.FIN,
        replyTcpFlags: TcpFlag.FIN,
        origPackets: 2,
        origBytes: 100,
      }),
    );
    assert.equal(a.flush(F1)[0]!.num_flows_completed, 1);
    a.observe(upd({ ...c, origTcpFlags: TcpFlag.ACK, origPackets: 1, origBytes: 40, lastSeenMs: F1 + 1 }));
    const [r] = a.flush(F2);
    assert.deepEqual(
      [r!.num_flows, r!.num_flows_started, r!.num_flows_completed, r!.bytes_in],
      [1, 0, 0, 40],
    );
    assert.deepEqual(a.flush(F3), []);
    assert.equal(a.stats().connections, 0);
  });

  test('a SYN on a closed 5-tuple starts a new connection', () => {
    const a = k0();
    const c = { srcIp: '10.0.0.1', dstIp: '10.0.0.2' };
    a.observe(upd({ ...c, origTcpFlags: TcpFlag.RST }));
    a.flush(F1);
    a.observe(upd({ ...c, origTcpFlags: TcpFlag.SYN, lastSeenMs: F1 + 1 }));
    const [r] = a.flush(F2);
    assert.deepEqual([r!.num_flows, r!.num_flows_started, r!.num_flows_completed], [1, 1, 0]);
  });

  test('ICMP and ICMPv6 have null ports; proto names', () => {
    const a = k0();
    a.observe(upd({ proto: 1, srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 0, dstPort: 0 }));
    a.observe(upd({ proto: 58, srcIp: 'fd00::1', dstIp: 'fd00::2', srcPort: 0, dstPort: 0 }));
    a.observe(upd({ proto: 132, srcIp: '10.0.0.1', dstIp: '10.0.0.2', dstPort: 9 }));
    a.observe(upd({ proto: 47, srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 0, dstPort: 0 }));
    const recs = a.flush(F1).sort((x, y) => x.proto.localeCompare(y.proto));
    assert.deepEqual(
      recs.map((r) => [r.proto, r.source_port, r.dest_port, r.dest_name_aggr]),
      [
        ['47', 0, 0, 'pvt'],
        ['icmp', null, null, 'pvt'],
        ['icmp6', null, null, 'pvt'],
        ['sctp', 40000, 9, 'pvt'],
      ],
    );
  });

  test('disabled action is counted; past the full table an allowed connection goes to overflow records, a denied one is dropped', () => {
    const a = k0(resolverWith(), { enabledForDenied: false, maxConnections: 1 });
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2' }), 'deny');
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2', origPackets: 1, origBytes: 10 }));
    // Table full: seen at egress of the pod's veth from its initiator, so the local side
    // (the pod, 10.0.0.3) received orig and sent reply.
    const full = {
      srcIp: '10.0.0.1',
      dstIp: '10.0.0.3',
      origPackets: 2,
      origBytes: 99,
      replyPackets: 1,
      replyBytes: 7,
    };
    a.observe(upd(full));
    a.observe(upd({ ...full, srcPort: 40001 })); // another one: the same two records
    const s = a.stats();
    assert.deepEqual(
      [
        s.updates,
        s.ignoredDisabled,
        s.droppedTableFull,
        s.droppedPackets,
        s.droppedBytes,
        s.overflowPackets,
        s.overflowBytes,
      ],
      [4, 1, 2, 0, 0, 6, 212],
    );
    const recs = a.flush(F1);
    assert.deepEqual(
      recs.map((r) => [
        r.dest_name_aggr,
        r.source_name_aggr,
        r.reporter,
        r.packets_in,
        r.bytes_in,
        r.packets_out,
        r.bytes_out,
        r.num_flows,
      ]),
      [
        ['pvt', 'pvt', 'dst', 1, 10, 0, 0, 1],
        ['overflow', 'pvt', 'src', 0, 0, 2, 14, 0],
        ['pvt', 'overflow', 'dst', 4, 198, 0, 0, 0],
      ],
      'the connection, then what the full table sent into the overflow records: the sums equal the traffic',
    );
    // The deny side has no overflow records: dropped and counted.
    const d = k0(resolverWith(), { maxConnections: 1 });
    d.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2', origPackets: 1, origBytes: 10 }), 'deny');
    d.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.3', origPackets: 2, origBytes: 99 }), 'deny');
    const ds = d.stats();
    assert.deepEqual(
      [ds.droppedTableFull, ds.droppedPackets, ds.droppedBytes, ds.overflowPackets],
      [1, 2, 99, 0],
    );
  });

  test('end_time never equals start_time', () => {
    const a = k0();
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2' }));
    const [r] = a.flush(T0 + 200);
    assert.deepEqual([r!.start_time, r!.end_time, r!['@timestamp']], [T0 / 1000, T0 / 1000 + 1, T0 + 1000]);
  });

  test('reconfigure changes the kind from the next flush, counts kept', () => {
    const a = k0();
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 1, origBytes: 5 }));
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 2, origBytes: 7 }));
    a.reconfigure({ kindForAllowed: 1 });
    const recs = a.flush(F1);
    assert.deepEqual(
      recs.map((r) => [r.source_port, r.bytes_in, r.num_flows]),
      [[null, 12, 2]],
    );
  });
});

describe('IP moves between pods', () => {
  test('traffic is attributed to the pod that held the IP when it was seen', () => {
    const r = resolverWith(metadata({ pods: [pod('ns', 'old-1', '10.0.0.7', 'old-')] }));
    // At F1 - 100 s the IP moved to new-1.
    r.update(metadata({ pods: [pod('ns', 'new-1', '10.0.0.7', 'new-')] }), F1 - 100_000);
    const a = new FlowAggregator({ nodeName: 'node1', resolver: r, startTimeMs: T0, kindForAllowed: 2 });
    a.observe(
      upd({
        key: 'x',
        srcIp: '10.0.0.7',
        dstIp: '8.8.8.8',
        firstSeenMs: T0 + 10_000,
        lastSeenMs: T0 + 10_000,
        ...AT_SRC,
      }),
    );
    a.observe(
      upd({
        key: 'y',
        srcIp: '10.0.0.7',
        dstIp: '8.8.8.8',
        firstSeenMs: F1 - 50_000,
        lastSeenMs: F1 - 50_000,
        ...AT_SRC,
      }),
    );
    const names = a
      .flush(F1)
      .map((x) => x.source_name_aggr)
      .sort();
    assert.deepEqual(names, ['new-*', 'old-*']);
  });
});

describe('carried-in connections (open before flowlogd saw them)', () => {
  test('TCP first seen mid-stream (no SYN): num_flows 1, started 0; its completion still counted', () => {
    const a = k0(resolverWith());
    const mid = { srcIp: '10.0.0.5', dstIp: '10.0.0.6', origPackets: 3, origBytes: 300 };
    a.observe(upd({ ...mid, initiatorHow: InitiatorHow.conntrack }));
    a.observe(upd({ ...mid, srcPort: 40001, initiatorHow: InitiatorHow.syn, origTcpFlags: TcpFlag.SYN }));
    const r1 = a.flush(F1).map((r) => [r.source_port, r.num_flows, r.num_flows_started]);
    assert.deepEqual(r1.sort(), [
      [40000, 1, 0],
      [40001, 1, 1],
    ]);
    a.observe(upd({ ...mid, initiatorHow: InitiatorHow.conntrack, origTcpFlags: TcpFlag.RST }));
    const [r2] = a.flush(F2).filter((r) => r.source_port === 40000);
    assert.deepEqual([r2!.num_flows, r2!.num_flows_started, r2!.num_flows_completed], [1, 0, 1]);
  });

  test('UDP has no opening to see: started at first sight', () => {
    const a = k0(resolverWith());
    a.observe(
      upd({ srcIp: '10.0.0.5', dstIp: '10.0.0.6', proto: 17, initiatorHow: InitiatorHow.firstPacket }),
    );
    assert.deepEqual(
      a.flush(F1).map((r) => r.num_flows_started),
      [1],
    );
  });
});
