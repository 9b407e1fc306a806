// Conntrack join (lifecycle, DNAT → backend + Service), without a kernel.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import { tupleKey } from '../../../src/aggregate/conntrack.ts';
import { type ConntrackEvent, ConntrackEventType, Hook, TcpFlag } from '../../../src/datapath/types.ts';
import { AT_DST, AT_SRC, BACKEND, CIP, CLIENT, md, resolverWith, T0, upd } from './helpers.ts';

function ct(p: Partial<ConntrackEvent> & { origSrc: string; origDst: string }): ConntrackEvent {
  return {
    type: p.type ?? ConntrackEventType.new,
    id: p.id ?? 1,
    proto: p.proto ?? 6,
    family: 4,
    origSrc: p.origSrc,
    origDst: p.origDst,
    origSport: p.origSport ?? 40000,
    origDport: p.origDport ?? 80,
    replySrc: p.replySrc ?? p.origDst,
    replyDst: p.replyDst ?? p.origSrc,
    replySport: p.replySport ?? p.origDport ?? 80,
    replyDport: p.replyDport ?? p.origSport ?? 40000,
    synthetic: p.synthetic ?? false,
    afterOverrun: p.afterOverrun ?? false,
    hasCounters: true,
    origPackets: 0,
    origBytes: 0,
    replyPackets: 0,
    replyBytes: 0,
    timeMs: p.timeMs ?? T0,
  };
}

test('tupleKey does not depend on direction', () => {
  assert.equal(tupleKey(6, 'a', 1, 'b', 2), tupleKey(6, 'b', 2, 'a', 1));
  assert.notEqual(tupleKey(6, 'a', 1, 'b', 2), tupleKey(17, 'a', 1, 'b', 2));
});

test('DNAT: both veths show the backend and the Service; DESTROY completes both', () => {
  for (const kind of [0, 1, 2, 3] as const) {
    const sources: string[] = [];
    const agg = new FlowAggregator({
      nodeName: 'node1',
      resolver: resolverWith(md),
      startTimeMs: T0,
      kindForAllowed: kind,
      onLifecycleSource: (s) => sources.push(s),
    });
    agg.observeConntrack(
      ct({ origSrc: CLIENT, origDst: CIP, origDport: 80, replySrc: BACKEND, replySport: 8080 }),
    );
    // Client's veth: pre-DNAT. Backend's veth: post-DNAT.
    agg.observe(
      upd({
        interfaceName: 'caliC',
        srcIp: CLIENT,
        dstIp: CIP,
        dstPort: 80,
        origPackets: 3,
        origBytes: 180,
        replyPackets: 2,
        replyBytes: 120,
        ...AT_SRC,
      }),
    );
    agg.observe(
      upd({
        interfaceName: 'caliS',
        srcIp: CLIENT,
        dstIp: BACKEND,
        dstPort: 8080,
        origPackets: 3,
        origBytes: 180,
        replyPackets: 2,
        replyBytes: 120,
        ...AT_DST,
      }),
    );
    const r1 = agg.flush(T0 + 10_000);
    assert.equal(r1.length, 2, `kind ${kind}: one record per reporter`);
    for (const r of r1) {
      assert.equal(r.dest_service_namespace, 'default');
      assert.equal(r.dest_service_name, 'web');
      assert.equal(r.dest_service_port, kind >= 3 ? '-' : 'http');
      assert.equal(r.dest_service_port_num, 80);
      assert.equal(r.dest_ip, kind >= 2 ? null : BACKEND, 'the backend, never the ClusterIP');
      assert.equal(r.dest_port, kind >= 3 ? null : 8080);
      assert.equal(r.dest_name_aggr, 'web-*');
      assert.deepEqual([r.num_flows, r.num_flows_started, r.num_flows_completed], [1, 1, 0]);
    }
    assert.deepEqual(r1.map((r) => r.reporter).sort(), ['dst', 'src']);
    const src = r1.find((r) => r.reporter === 'src')!;
    assert.deepEqual([src.packets_out, src.bytes_out, src.packets_in, src.bytes_in], [3, 180, 2, 120]);
    agg.observeConntrack(
      ct({
        type: ConntrackEventType.destroy,
        origSrc: CLIENT,
        origDst: CIP,
        replySrc: BACKEND,
        replySport: 8080,
      }),
    );
    // A resync's synthetic DESTROY for the same entry changes nothing.
    agg.observeConntrack(
      ct({
        type: ConntrackEventType.destroy,
        synthetic: true,
        origSrc: CLIENT,
        origDst: CIP,
        replySrc: BACKEND,
        replySport: 8080,
      }),
    );
    const r2 = agg.flush(T0 + 20_000);
    assert.deepEqual(
      r2.map((r) => [r.num_flows, r.num_flows_started, r.num_flows_completed]),
      [
        [1, 0, 1],
        [1, 0, 1],
      ],
    );
    assert.deepEqual(sources, ['tcp-flags+idle', 'conntrack']);
    assert.equal(agg.stats().conntrackCompleted, 2);
  }
});

test('UDP tracked by conntrack outlives the idle timeout and ends at DESTROY; untracked ends idle', () => {
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md),
    startTimeMs: T0,
    kindForAllowed: 0,
    idleTimeoutMs: 5_000,
  });
  agg.observeConntrack(ct({ proto: 17, origSrc: CLIENT, origDst: BACKEND, origDport: 53 }));
  agg.observe(
    upd({ proto: 17, srcIp: CLIENT, dstIp: BACKEND, dstPort: 53, origPackets: 1, origBytes: 60, ...AT_SRC }),
  );
  // Joined after the update arrived first: waits until the entry comes.
  agg.observe(
    upd({
      proto: 17,
      srcIp: CLIENT,
      srcPort: 40001,
      dstIp: BACKEND,
      dstPort: 53,
      origPackets: 1,
      origBytes: 60,
      ...AT_SRC,
    }),
  );
  agg.observeConntrack(
    ct({ id: 2, proto: 17, origSrc: CLIENT, origSport: 40001, origDst: BACKEND, origDport: 53 }),
  );
  // Another flow conntrack never mentions: idle timeout.
  agg.observe(
    upd({
      proto: 17,
      srcIp: CLIENT,
      srcPort: 40002,
      dstIp: BACKEND,
      dstPort: 53,
      origPackets: 1,
      origBytes: 60,
      ...AT_SRC,
    }),
  );
  const r1 = agg.flush(T0 + 60_000);
  const by = (rs: typeof r1, port: number) => rs.find((r) => r.source_port === port);
  assert.equal(by(r1, 40000)!.num_flows_completed, 0, 'tracked: not idle-expired');
  assert.equal(by(r1, 40001)!.num_flows_completed, 0);
  assert.equal(by(r1, 40002)!.num_flows_completed, 1, 'untracked: idle timeout');
  agg.observeConntrack(
    ct({ type: ConntrackEventType.destroy, proto: 17, origSrc: CLIENT, origDst: BACKEND, origDport: 53 }),
  );
  const r2 = agg.flush(T0 + 70_000);
  assert.deepEqual(
    [by(r2, 40000)?.num_flows_completed, by(r2, 40001)?.num_flows_completed, by(r2, 40002)],
    [1, 0, undefined],
  );
});

test('after an overrun, a complete dump ends the connections whose entries went unheard, and joins the rest', () => {
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md),
    startTimeMs: T0,
    kindForAllowed: 0,
    idleTimeoutMs: 600_000, // so that only the dump can end them
  });
  // Conntrack events flow (the initial dump ended)...
  agg.observeConntrack(ct({ type: ConntrackEventType.dumpDone, origSrc: '', origDst: '', timeMs: T0 }));
  const flow = (port: number) =>
    upd({
      proto: 17,
      srcIp: CLIENT,
      srcPort: port,
      dstIp: BACKEND,
      dstPort: 53,
      origPackets: 1,
      origBytes: 60,
      ...AT_SRC,
    });
  // ...then two UDP flows whose NEW events are lost in an overrun.
  agg.observe(flow(41000));
  agg.observe(flow(41001));
  const r1 = agg.flush(T0 + 10_000);
  assert.deepEqual(r1.map((r) => [r.source_port, r.num_flows_started, r.num_flows_completed]).sort(), [
    [41000, 1, 0],
    [41001, 1, 0],
  ]);
  // A dump without lost events proves nothing about entries it does not have.
  agg.observeConntrack(
    ct({ type: ConntrackEventType.dumpDone, origSrc: '', origDst: '', timeMs: T0 + 11_000 }),
  );
  // The resync dump after the overrun still has 41001's entry but no longer 41000's.
  agg.observeConntrack(
    ct({
      type: ConntrackEventType.dump,
      id: 7,
      proto: 17,
      origSrc: CLIENT,
      origSport: 41001,
      origDst: BACKEND,
      origDport: 53,
    }),
  );
  agg.observeConntrack(
    ct({
      type: ConntrackEventType.dumpDone,
      origSrc: '',
      origDst: '',
      timeMs: T0 + 12_000,
      afterOverrun: true,
    }),
  );
  const r2 = agg.flush(T0 + 20_000);
  assert.deepEqual(
    r2.map((r) => [r.source_port, r.num_flows_started, r.num_flows_completed]).sort(),
    [
      [41000, 0, 1],
      [41001, 0, 0],
    ],
    'the unheard one completed, the dumped one joined and still open',
  );
  agg.observeConntrack(
    ct({
      type: ConntrackEventType.destroy,
      id: 7,
      proto: 17,
      origSrc: CLIENT,
      origSport: 41001,
      origDst: BACKEND,
      origDport: 53,
    }),
  );
  const r3 = agg.flush(T0 + 30_000);
  assert.deepEqual(
    r3.map((r) => [r.source_port, r.num_flows_completed]),
    [[41001, 1]],
    'ends at its DESTROY',
  );
});

test('a NEW for a tuple already held means the old entry ended unheard: it completes, and entries stay counted once', () => {
  const agg = new FlowAggregator({ nodeName: 'node1', resolver: resolverWith(md), startTimeMs: T0 });
  const tuple = { proto: 17, origSrc: CLIENT, origSport: 42000, origDst: BACKEND, origDport: 53 };
  agg.observeConntrack(ct({ ...tuple, id: 0xfffffff0 })); // ids are u32: above int32 too
  agg.observe(
    upd({
      proto: 17,
      srcIp: CLIENT,
      srcPort: 42000,
      dstIp: BACKEND,
      dstPort: 53,
      origPackets: 1,
      origBytes: 60,
      ...AT_SRC,
    }),
  );
  agg.observeConntrack(ct({ ...tuple, type: ConntrackEventType.dump, id: 0xfffffff0 })); // a dump repeats it
  assert.equal(agg.stats().conntrackEntries, 1);
  assert.deepEqual(
    agg.flush(T0 + 10_000).map((r) => [r.num_flows_started, r.num_flows_completed]),
    [[1, 0]],
  );
  agg.observeConntrack(ct({ ...tuple, id: 12 })); // its DESTROY was lost in an overrun
  assert.equal(agg.stats().conntrackEntries, 1);
  assert.deepEqual(
    agg.flush(T0 + 20_000).map((r) => [r.num_flows_started, r.num_flows_completed]),
    [[0, 1]],
  );
  // The older entry's DESTROY, arriving late (queued behind a resync's dump), leaves the
  // newer one alone; the newer one's own DESTROY ends it.
  agg.observeConntrack(ct({ ...tuple, type: ConntrackEventType.destroy, id: 0xfffffff0 }));
  assert.equal(agg.stats().conntrackEntries, 1);
  agg.observeConntrack(ct({ ...tuple, type: ConntrackEventType.destroy, id: 12 }));
  assert.equal(agg.stats().conntrackEntries, 0);
});

test("a masqueraded pod connection on the uplink is not reported as the host's own", () => {
  const NODE = '192.168.1.10';
  const POD = '10.244.0.7';
  const REMOTE = '203.0.113.5';
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(undefined, [NODE]),
    startTimeMs: T0,
    kindForAllowed: 0,
    hostEndpoints: true,
  });
  // SNAT: the pod's 10.244.0.7:5000 leaves as the node's 192.168.1.10:61000.
  agg.observeConntrack(
    ct({
      proto: 6,
      origSrc: POD,
      origSport: 5000,
      origDst: REMOTE,
      origDport: 443,
      replySrc: REMOTE,
      replySport: 443,
      replyDst: NODE,
      replyDport: 61000,
    }),
  );
  // The host's own connection, also on eth0.
  agg.observeConntrack(
    ct({ id: 2, proto: 6, origSrc: NODE, origSport: 62000, origDst: REMOTE, origDport: 443 }),
  );
  const eth0 = { interfaceName: 'eth0', firstHook: Hook.egress, firstFromInitiator: true } as const;
  agg.observe(
    upd({
      srcIp: NODE,
      srcPort: 61000,
      dstIp: REMOTE,
      dstPort: 443,
      origPackets: 3,
      origBytes: 300,
      ...eth0,
    }),
  );
  agg.observe(
    upd({
      srcIp: NODE,
      srcPort: 62000,
      dstIp: REMOTE,
      dstPort: 443,
      origPackets: 2,
      origBytes: 200,
      ...eth0,
    }),
  );
  const rs = agg.flush(T0 + 10_000);
  assert.deepEqual(
    rs.map((r) => [r.source_type, r.source_port, r.packets_out]),
    [['hep', 62000, 2]],
  );
  assert.equal(agg.stats().forwarded, 1);
});

test('UDP and ICMP flows in the start dump are carried in; ones that begin later are started (issue 14 item 10)', () => {
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md),
    startTimeMs: T0,
    kindForAllowed: 0,
  });
  // The dump made at start: a UDP flow and an ICMP echo flow open before this run.
  agg.observeConntrack(
    ct({ type: ConntrackEventType.dump, id: 1, proto: 17, origSrc: CLIENT, origDst: BACKEND, origDport: 53 }),
  );
  agg.observeConntrack(
    ct({
      type: ConntrackEventType.dump,
      id: 2,
      proto: 1,
      origSrc: CLIENT,
      origDst: BACKEND,
      origSport: 7,
      origDport: 7,
    }),
  );
  agg.observeConntrack(ct({ type: ConntrackEventType.dumpDone, id: 0, origSrc: '', origDst: '' }));
  // After it: a new UDP flow (NEW event), and a periodic resync's dump of another.
  agg.observeConntrack(
    ct({ id: 3, proto: 17, origSrc: CLIENT, origDst: BACKEND, origSport: 40001, origDport: 53 }),
  );
  agg.observeConntrack(
    ct({
      type: ConntrackEventType.dump,
      id: 4,
      proto: 17,
      origSrc: CLIENT,
      origDst: BACKEND,
      origSport: 40002,
      origDport: 53,
    }),
  );
  const flow = (proto: number, srcPort: number, dstPort: number) =>
    upd({ interfaceName: 'caliC', proto, srcIp: CLIENT, dstIp: BACKEND, srcPort, dstPort, ...AT_SRC });
  agg.observe(flow(17, 40000, 53));
  agg.observe({ ...flow(1, 7, 7), icmpId: 7 });
  agg.observe(flow(17, 40001, 53));
  agg.observe(flow(17, 40002, 53));
  const rs = agg.flush(T0 + 10_000);
  const started = (proto: string, port: number) =>
    rs
      .filter((r) => r.proto === proto && (proto === 'icmp' || r.source_port === port))
      .map((r) => [r.num_flows, r.num_flows_started]);
  assert.deepEqual(started('udp', 40000), [[1, 0]], 'open before start: carried in');
  assert.deepEqual(started('icmp', 7), [[1, 0]], 'open before start: carried in');
  assert.deepEqual(started('udp', 40001), [[1, 1]], 'began after start (NEW)');
  assert.deepEqual(started('udp', 40002), [[1, 1]], 'dumped by a resync, not at start: began in this run');
});

test("a 4-tuple reused for a new TCP connection joins conntrack's new entry, whose DESTROY ends it", () => {
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md),
    startTimeMs: T0,
    kindForAllowed: 0,
  });
  const tuple = { origSrc: CLIENT, origSport: 41000, origDst: BACKEND, origDport: 8080 };
  const conn = (flags: number, replyFlags: number, at: number) =>
    upd({
      srcIp: CLIENT,
      srcPort: 41000,
      dstIp: BACKEND,
      dstPort: 8080,
      origPackets: 2,
      origBytes: 120,
      replyPackets: 2,
      replyBytes: 120,
      origTcpFlags: flags,
      replyTcpFlags: replyFlags,
      firstSeenMs: at,
      lastSeenMs: at,
      ...AT_SRC,
    });
  const SYN = TcpFlag.SYN;
  const FIN = TcpFlag.FIN | TcpFlag.ACK;
  agg.observeConntrack(ct({ ...tuple, id: 1 }));
  agg.observe(conn(SYN, TcpFlag.SYN | TcpFlag.ACK, T0 + 1000));
  agg.observe(conn(FIN, FIN, T0 + 2000)); // closed by FIN both ways
  assert.deepEqual(
    agg.flush(T0 + 10_000).map((r) => [r.num_flows_started, r.num_flows_completed]),
    [[1, 1]],
  );
  // The client reuses the port (tcp_tw_reuse): conntrack ends the TIME_WAIT entry and
  // makes a new one; then the new connection's SYN is drained.
  agg.observeConntrack(ct({ ...tuple, type: ConntrackEventType.destroy, id: 1 }));
  agg.observeConntrack(ct({ ...tuple, id: 2 }));
  agg.observe(conn(SYN, TcpFlag.SYN | TcpFlag.ACK, T0 + 11_000));
  assert.equal(agg.stats().conntrackJoined, 2, 'the new connection joined the new entry');
  assert.deepEqual(
    agg.flush(T0 + 20_000).map((r) => [r.num_flows_started, r.num_flows_completed]),
    [[1, 0]],
  );
  // Its FINs went unseen here (another path): the new entry's DESTROY ends it.
  agg.observeConntrack(ct({ ...tuple, type: ConntrackEventType.destroy, id: 2 }));
  assert.deepEqual(
    agg.flush(T0 + 30_000).map((r) => [r.num_flows_started, r.num_flows_completed]),
    [[0, 1]],
  );
  assert.equal(agg.stats().conntrackCompleted, 1);
  assert.equal(agg.stats().conntrackEntries, 0);
});

test('a reused 4-tuple: balanced to another backend it names the new one; its SYN drained before the events waits for the NEW', () => {
  const OTHER = '10.0.9.9'; // a second backend of the Service
  const SYN = TcpFlag.SYN;
  const FIN = TcpFlag.FIN | TcpFlag.ACK;
  const conn = (dstIp: string, dstPort: number, flags: number, replyFlags: number, at: number) =>
    upd({
      interfaceName: 'caliC',
      srcIp: CLIENT,
      srcPort: 41000,
      dstIp,
      dstPort,
      origPackets: 1,
      origBytes: 60,
      replyPackets: 1,
      replyBytes: 60,
      origTcpFlags: flags,
      replyTcpFlags: replyFlags,
      firstSeenMs: at,
      lastSeenMs: at,
      ...AT_SRC,
    });
  const viaService = (id: number, backend: string, type: ConntrackEventType = ConntrackEventType.new) =>
    ct({
      type,
      id,
      origSrc: CLIENT,
      origSport: 41000,
      origDst: CIP,
      origDport: 80,
      replySrc: backend,
      replySport: 8080,
    });
  const rows = (agg: FlowAggregator, at: number) =>
    agg.flush(at).map((r) => [r.dest_ip, r.num_flows_started, r.num_flows_completed]);

  // DNAT to another backend: the client's veth sees the ClusterIP both times.
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md),
    startTimeMs: T0,
    kindForAllowed: 0,
  });
  agg.observeConntrack(viaService(1, BACKEND));
  agg.observe(conn(CIP, 80, SYN, SYN | TcpFlag.ACK, T0 + 1000));
  agg.observe(conn(CIP, 80, FIN, FIN, T0 + 2000));
  assert.deepEqual(rows(agg, T0 + 10_000), [[BACKEND, 1, 1]]);
  agg.observeConntrack(viaService(1, BACKEND, ConntrackEventType.destroy));
  agg.observeConntrack(viaService(2, OTHER));
  agg.observe(conn(CIP, 80, SYN, SYN | TcpFlag.ACK, T0 + 11_000));
  assert.equal(agg.stats().conntrackJoined, 2);
  assert.deepEqual(rows(agg, T0 + 20_000), [[OTHER, 1, 0]], 'the new backend');
  agg.observeConntrack(viaService(2, OTHER, ConntrackEventType.destroy));
  assert.deepEqual(rows(agg, T0 + 30_000), [[OTHER, 0, 1]]);

  // The SYN drained before conntrack's DESTROY and NEW were read.
  const early = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md),
    startTimeMs: T0,
    kindForAllowed: 0,
  });
  early.observeConntrack(viaService(1, BACKEND));
  early.observe(conn(CIP, 80, SYN, SYN | TcpFlag.ACK, T0 + 1000));
  early.observe(conn(CIP, 80, FIN, FIN, T0 + 2000));
  assert.deepEqual(rows(early, T0 + 10_000), [[BACKEND, 1, 1]]);
  early.observe(conn(CIP, 80, SYN, SYN | TcpFlag.ACK, T0 + 11_000));
  early.observeConntrack(viaService(1, BACKEND, ConntrackEventType.destroy)); // the old one's: not the new connection's end
  early.observeConntrack(viaService(2, BACKEND));
  assert.equal(early.stats().conntrackJoined, 2, 'joined at the NEW');
  assert.deepEqual(rows(early, T0 + 20_000), [[BACKEND, 1, 0]], 'started, not ended by the old DESTROY');
  early.observeConntrack(viaService(2, BACKEND, ConntrackEventType.destroy));
  assert.deepEqual(rows(early, T0 + 30_000), [[BACKEND, 0, 1]]);
  assert.equal(early.stats().conntrackCompleted, 1);
});
