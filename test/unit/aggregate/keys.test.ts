// Record keys: interned, found through the index, swept when no connection uses them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TcpFlag } from '../../../src/datapath/types.ts';
import { AT_SRC, F1, F2, F3, k0, resolverWith, T0, upd } from './helpers.ts';

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
