import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import { Hook, InitiatorHow, TcpFlag } from '../../../src/datapath/types.ts';
import { inBatches, LineBatchBuilder } from '../../../src/export/batch.ts';
import { AT_DST, AT_SRC, metadata, pod, resolverWith, T0, upd } from './helpers.ts';

const F1 = T0 + 300_000;
const F2 = T0 + 600_000;
const F3 = T0 + 900_000;

function k0(resolver = resolverWith(), extra: Partial<ConstructorParameters<typeof FlowAggregator>[0]> = {}) {
  return new FlowAggregator({
    nodeName: 'node1',
    resolver,
    startTimeMs: T0,
    kindForAllowed: 0,
    kindForDenied: 0,
    ...extra,
  });
}

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

  test('disabled action and full table are counted, nothing else changes', () => {
    const a = k0(resolverWith(), { enabledForDenied: false, maxConnections: 1 });
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2' }), 'deny');
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.2' }));
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '10.0.0.3', origPackets: 2, origBytes: 99 }));
    const s = a.stats();
    assert.deepEqual(
      [s.updates, s.ignoredDisabled, s.droppedTableFull, s.droppedPackets, s.droppedBytes, s.connections],
      [3, 1, 1, 2, 99, 1],
    );
    assert.equal(a.flush(F1).length, 1);
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

describe('lines', () => {
  test('each line is JSON.stringify of its parsed record, with labels, policies and services off', () => {
    const md = metadata({ pods: [pod('ns', 'a-1', '10.1.0.1', 'a-', { app: 'a"quoted"' })] });
    const make = () =>
      k0(resolverWith(md), {
        includeLabels: false,
        includePolicies: false,
        includeService: false,
        nodeName: 'n"1',
      } as never);
    const [a, b] = [make(), make()];
    for (const x of [a, b]) {
      x.observe(upd({ srcIp: '10.1.0.1', dstIp: '8.8.8.8', proto: 1, srcPort: 0, dstPort: 0, ...AT_SRC }));
      x.observe(upd({ srcIp: '10.1.0.1', dstIp: '10.1.0.9', origBytes: 3 }), 'deny');
    }
    const lines = [...b.flushLineIterator(F1)];
    assert.equal(lines.length, 2);
    assert.deepEqual(
      lines,
      a.flush(F1).map((r) => JSON.stringify(r)),
    );
  });

  test("the daemon's batches hold the same lines; a batch taken after the next flush throws", () => {
    const [a, b] = [k0(), k0()];
    for (const x of [a, b])
      for (let i = 0; i < 5; i++) x.observe(upd({ srcIp: '10.1.0.1', dstIp: '8.8.8.8', srcPort: 40000 + i }));
    const chunks = [...inBatches(b.flushLineIterator(F1), new LineBatchBuilder(1 << 20, 2))].map((x) =>
      x.lines(),
    );
    assert.deepEqual(
      chunks.map((c) => c.length),
      [2, 2, 1],
    );
    assert.deepEqual(chunks.flat(), [...a.flushLineIterator(F1)]);
    const it = inBatches(b.flushLineIterator(F2), new LineBatchBuilder(1 << 20, 2));
    b.flush(F2 + 1000);
    assert.throws(() => it.next(), /after the next flush/);
  });
});

describe('many connections', () => {
  // Thousands of record keys and connections: the record-key index grows, is swept and
  // rebuilt, and the connection number slots of ended connections are handed to new ones.
  const F4 = T0 + 1_200_000;
  const peer = (i: number) => `10.9.${i >> 8}.${i & 255}`;
  const conn = (i: number, port: number, bytes: number, extra: Partial<Parameters<typeof upd>[0]> = {}) =>
    upd({
      srcIp: '10.1.0.1',
      dstIp: peer(i),
      srcPort: port,
      origPackets: 1,
      origBytes: bytes,
      ...AT_SRC,
      ...extra,
    });

  test('3,000 keys over four flushes: each record exactly once, with its own counts', () => {
    const a = k0();
    for (let i = 0; i < 3000; i++) a.observe(conn(i, 20000 + i, 100 + i, { lastSeenMs: T0 + 1000 }));
    const r1 = a.flush(F1);
    assert.equal(r1.length, 3000);
    assert.equal(
      r1.reduce((s, r) => s + r.bytes_out, 0),
      3000 * 100 + (2999 * 3000) / 2,
    );

    // The odd half ends (RST): reported completed in flush 2, kept one interval, then gone.
    for (let i = 1; i < 3000; i += 2)
      a.observe(conn(i, 20000 + i, 1, { origTcpFlags: TcpFlag.RST, lastSeenMs: F1 + 1000 }));
    const r2 = a.flush(F2);
    assert.equal(r2.length, 3000);
    assert.equal(r2.filter((r) => r.num_flows_completed === 1).length, 1500);
    assert.equal(r2.filter((r) => r.bytes_out === 1).length, 1500);
    const r3 = a.flush(F3);
    assert.equal(r3.length, 1500, 'the ended half is gone, the open half re-reported');
    assert.ok(r3.every((r) => r.bytes_out === 0 && Number(r.dest_ip!.split('.')[3]) % 2 === 0));

    // 1,500 new connections to the same peers on other ports, and traffic on the open half.
    for (let i = 0; i < 3000; i += 2) a.observe(conn(i, 20000 + i, 7, { lastSeenMs: F3 + 1000 }));
    for (let i = 1; i < 3000; i += 2) a.observe(conn(i, 40000 + i, 1000 + i, { lastSeenMs: F3 + 1000 }));
    const r4 = a.flush(F4);
    assert.equal(r4.length, 3000);
    const keys = new Set(r4.map((r) => `${r.source_port}>${r.dest_ip}:${r.dest_port}`));
    assert.equal(keys.size, 3000, 'no record key twice');
    for (const r of r4) {
      const i = Number(r.dest_ip!.split('.')[2]) * 256 + Number(r.dest_ip!.split('.')[3]);
      if (i % 2 === 0) assert.deepEqual([r.source_port, r.bytes_out, r.num_flows_started], [20000 + i, 7, 0]);
      else assert.deepEqual([r.source_port, r.bytes_out, r.num_flows_started], [40000 + i, 1000 + i, 1]);
    }
    assert.equal(a.stats().connections, 3000);
  });
});

test('kind 1 with thousands of connections: one record per peer, flush after flush', () => {
  const a = k0(resolverWith(), { kindForAllowed: 1 });
  const peer = (i: number) => `10.9.${i >> 8}.${i & 255}`;
  for (let round = 0; round < 3; round++) {
    // 4,000 connections to 2,000 peers (two source ports each), new ports every round.
    for (let i = 0; i < 4000; i++)
      a.observe(
        upd({
          srcIp: '10.1.0.1',
          dstIp: peer(i % 2000),
          srcPort: 10000 + round * 4000 + i,
          origPackets: 1,
          origBytes: 10,
          origTcpFlags: TcpFlag.RST,
          lastSeenMs: T0 + round * 300_000 + 1000,
          ...AT_SRC,
        }),
      );
    const recs = a.flush(T0 + (round + 1) * 300_000);
    assert.equal(recs.length, 2000, `round ${round}`);
    assert.ok(
      recs.every((r) => r.num_flows === 2 && r.num_flows_started === 2 && r.num_flows_completed === 2),
    );
    assert.ok(recs.every((r) => r.bytes_out === 20 && r.source_port === null));
  }
});

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
