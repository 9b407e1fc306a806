import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowRecordView, formatAddress } from '../../../src/datapath/decode.ts';
import {
  FlowCounters,
  FlowKey,
  RING_RECORD_FLOW,
  RING_RECORD_SIZE,
  Ring,
} from '../../../src/datapath/layout.ts';
import { InitiatorHow } from '../../../src/datapath/types.ts';

function addr(bytes: number[]): Uint8Array {
  return Uint8Array.from(bytes);
}

test('formatAddress: IPv4-mapped and RFC 5952 IPv6', () => {
  const v4 = addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 213, 7, 2]);
  assert.equal(formatAddress(v4, 0, 4), '10.213.7.2');
  const v6 = (...g: number[]) => addr(g.flatMap((x) => [x >> 8, x & 0xff]));
  assert.equal(formatAddress(v6(0xfd00, 0xf10e, 0, 0, 0, 0, 0, 2), 0, 6), 'fd00:f10e::2');
  assert.equal(
    formatAddress(v6(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee), 0, 6),
    'fe80::ecee:eeff:feee:eeee',
  );
  assert.equal(formatAddress(v6(1, 0, 0, 1, 0, 0, 0, 1), 0, 6), '1:0:0:1::1');
  assert.equal(formatAddress(v6(1, 2, 3, 4, 5, 6, 7, 8), 0, 6), '1:2:3:4:5:6:7:8');
  assert.equal(formatAddress(v6(0, 0, 0, 0, 0, 0, 0, 0), 0, 6), '::');
  assert.equal(
    formatAddress(v6(1, 0, 2, 3, 4, 5, 6, 7), 0, 6),
    '1:0:2:3:4:5:6:7',
    'a single zero group stays',
  );
});

/** One ring record where side b (10.0.0.9:443) sent first but side a initiated. */
function record(initiator: 0 | 1): Uint8Array {
  const buf = new Uint8Array(2 * RING_RECORD_SIZE);
  const dv = new DataView(buf.buffer);
  const base = RING_RECORD_SIZE; // second slot, to prove `at()` moves
  dv.setUint32(base + Ring.type, RING_RECORD_FLOW, true);
  const k = base + Ring.key;
  dv.setUint32(k + FlowKey.ifindex, 7, true);
  buf.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1], k + FlowKey.addr_a);
  buf.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 9], k + FlowKey.addr_b);
  dv.setUint16(k + FlowKey.port_a, 51000, true);
  dv.setUint16(k + FlowKey.port_b, 443, true);
  buf[k + FlowKey.proto] = 6;
  buf[k + FlowKey.family] = 4;
  const c = base + Ring.counters;
  dv.setUint32(c + FlowCounters.packets, 10, true); // a -> b
  dv.setUint32(c + FlowCounters.packets + 8, 7, true); // b -> a
  dv.setUint32(c + FlowCounters.bytes, 5_000, true);
  dv.setUint32(c + FlowCounters.bytes + 4, 1, true); // a -> b: 2^32 + 5000 bytes
  dv.setUint32(c + FlowCounters.bytes + 8, 900, true);
  dv.setBigUint64(c + FlowCounters.first_seen_ns, 1_795_000_000_123_456_789n, true);
  dv.setBigUint64(c + FlowCounters.last_seen_ns, 1_795_000_001_000_000_000n, true);
  dv.setUint32(c + FlowCounters.tcp_flags, 0x02 | 0x10 | ((0x12 | 0x01) << 8), true);
  buf[c + FlowCounters.initiator] = initiator;
  buf[c + FlowCounters.initiator_how] = InitiatorHow.syn;
  buf[c + FlowCounters.first_hook] = 1;
  buf[c + FlowCounters.first_dir] = 1; // b sent the first packet
  return buf;
}

test('a view orients the record by its initiator', () => {
  const v = new FlowRecordView(record(0), (i) => (i === 7 ? 'cali123' : ''));
  assert.equal(v.at(1), RING_RECORD_FLOW);
  assert.deepEqual(
    [v.interfaceName, v.proto, v.family, v.srcIp, v.srcPort, v.dstIp, v.dstPort],
    ['cali123', 6, 4, '10.0.0.1', 51000, '10.0.0.9', 443],
  );
  assert.deepEqual([v.origPackets, v.origBytes, v.replyPackets, v.replyBytes], [10, 2 ** 32 + 5000, 7, 900]);
  assert.deepEqual([v.origTcpFlags, v.replyTcpFlags], [0x12, 0x13]);
  assert.deepEqual([v.firstSeenMs, v.lastSeenMs], [1_795_000_000_123, 1_795_000_001_000]);
  assert.equal(v.firstHook, 1);
  assert.equal(v.firstFromInitiator, false, 'b sent first, a initiated');

  const w = new FlowRecordView(record(1));
  w.at(1);
  assert.deepEqual([w.srcIp, w.srcPort, w.dstIp, w.dstPort], ['10.0.0.9', 443, '10.0.0.1', 51000]);
  assert.deepEqual([w.origPackets, w.replyPackets, w.origTcpFlags], [7, 10, 0x13]);
  assert.equal(w.firstFromInitiator, true);
  assert.equal(w.key, v.key, 'the key does not depend on orientation');
});

test('a flow key tells apart every field that can differ, and is short for IPv4', () => {
  const buf = record(0);
  const k = RING_RECORD_SIZE + Ring.key;
  const v = new FlowRecordView(buf);
  v.at(1);
  const key = v.key;
  assert.equal(key.length, 9, 'IPv4: ifindex, two addresses, two ports, proto as 9 code units');
  // Every byte of ifindex, the IPv4 addresses, the ports and proto changes the key.
  const varying = [
    ...[0, 1, 2, 3].map((i) => FlowKey.ifindex + i),
    ...[12, 13, 14, 15].map((i) => FlowKey.addr_a + i),
    ...[12, 13, 14, 15].map((i) => FlowKey.addr_b + i),
    FlowKey.port_a,
    FlowKey.port_a + 1,
    FlowKey.port_b,
    FlowKey.port_b + 1,
    FlowKey.proto,
  ];
  const seen = new Set([key]);
  for (const off of varying) {
    buf[k + off]! ^= 0x80;
    seen.add(v.key);
    buf[k + off]! ^= 0x80;
  }
  assert.equal(seen.size, 1 + varying.length);
  assert.equal(v.key, key);
  // IPv6: the whole key, 44 bytes, never equal to an IPv4 key.
  buf[k + FlowKey.family] = 6;
  assert.equal(v.key.length, FlowKey.size);
});
