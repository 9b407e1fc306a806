// The per-CPU flow cache's set logic (bpf/include/flow_cache_ops.h, cache_claim4), by
// BPF_PROG_TEST_RUN on five UDP flows chosen to fall in one set of two ways: the cache
// takes an empty way, evicts the way seen longest ago (its counts go to its entry), and
// leaves both ways alone when both were counted within FLOW_CACHE_KEEP_NS; and on one TCP
// 4-tuple used twice, a FIN's slot goes to its entry, an ending connection's last packets
// take none, and the next connection's SYN claims one again; IPv6 connections go
// through their own cache (flow_cache6) by the same rules. Counts stay exact.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import { ether, ipv4, ipv6, tcp, udp } from '../../src/lab/packets.ts';
import { FlowCollector, kernelSkipReason } from './helpers.ts';

const skip = kernelSkipReason();
// FLOW_CACHE_SETS in bpf/include/flow_record.h.
const SETS = 1024;
const SRC = [10, 9, 0, 1];
const DST = [10, 9, 0, 2];
const DPORT = 53;
const LOOPBACK = 1; // test runs see the loopback device

const le32 = (b: number[]) => (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;

/** cache_set4()'s set for SRC:sport -> DST:53 (SRC sorts first: it is side a). */
function setOf(sport: number): number {
  let h = Math.imul(le32(SRC), 0x85ebca77);
  h ^= Math.imul(le32(DST), 0xc2b2ae3d);
  h ^= Math.imul(((sport << 16) | DPORT) >>> 0, 0x27d4eb2f);
  h ^= 17;
  h >>>= 0;
  return (((h ^ (h >>> 16)) >>> 0) + LOOPBACK) & (SETS - 1);
}

describe('flow cache sets (BPF_PROG_TEST_RUN)', { skip }, () => {
  let dp: FlowDatapath;
  let flows: FlowCollector;
  before(() => {
    // The cache is per CPU and a test run runs where its thread is: keep this one on CPU 0.
    execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
    flows = new FlowCollector();
    dp = new FlowDatapath({ interfaces: ['flowlogd-none'], drainIntervalMs: 60000 }, flows.onUpdate);
  });
  after(async () => {
    await dp?.stop();
    dp?.close();
  });

  test("empty way first, then the older way, none while both are this tick's; every packet counted once", async () => {
    const ports: number[] = [];
    const target = setOf(20000);
    for (let p = 20000; ports.length < 5 && p < 65536; p++) if (setOf(p) === target) ports.push(p);
    assert.equal(ports.length, 5);
    const [a, b, c, e, f] = ports as [number, number, number, number, number];
    const send = (sport: number) =>
      dp.testRun(ether(0x0800, ipv4(17, SRC, DST, udp(sport, DPORT, 10))), true);
    await dp.sync();
    const before = dp.stats().kernel;
    // a and b: the first packet makes the entry and claims a way, the second is a hit.
    send(a);
    send(a);
    send(b);
    send(b);
    // Past FLOW_CACHE_KEEP_NS (20 ms, bpf/include/flow_cache.h) and two ticks of the coarse
    // clock more: sleeping exactly 20 ms left a and b young enough to keep on about half the runs.
    await new Promise((r) => setTimeout(r, 40));
    send(c); // both ways taken, neither this tick's: evicts a (seen first), its hit to its entry
    send(e); // ways c (this tick) and b (older): evicts b
    send(f); // ways c and e, both this tick's: no eviction, f counted in the map only
    await dp.sync();
    const s = dp.stats().kernel;
    assert.equal(s.cacheEvictions! - before.cacheEvictions!, 2, 'a and b evicted, nothing for f');
    // a's and b's second packets, added at their eviction (c's and e's ways hold none).
    assert.equal(s.cacheHits! - before.cacheHits!, 2);
    assert.equal(s.lostPackets! - before.lostPackets!, 0);
    const packets = new Map(
      [...flows.flows.values()].map((t) => [
        t.srcPort === DPORT ? t.dstPort : t.srcPort,
        t.origPackets + t.replyPackets,
      ]),
    );
    assert.deepEqual(
      ports.map((p) => packets.get(p)),
      [2, 2, 1, 1, 1],
    );
  });

  test("one 4-tuple twice: released at its FIN, no slot for the last packets, the reused tuple's SYN claims again", async () => {
    const [FIN, SYN, ACK] = [0x01, 0x02, 0x10];
    const C = [10, 9, 1, 1];
    const S = [10, 9, 1, 2];
    const up = (flags: number, n = 0) =>
      dp.testRun(ether(0x0800, ipv4(6, C, S, tcp(40000, 80, flags, n))), true);
    const down = (flags: number, n = 0) =>
      dp.testRun(ether(0x0800, ipv4(6, S, C, tcp(80, 40000, flags, n))), true);
    const connection = () => {
      up(SYN); // to the entry (a SYN decides the initiator there), then claims a slot
      down(SYN | ACK); // hits from here ...
      up(ACK);
      up(ACK, 64);
      down(ACK, 64);
      up(FIN | ACK); // ... to this FIN: the slot's 5 to the entry, the slot emptied
      down(FIN | ACK); // the connection is ending: to the entry, no slot
      up(ACK);
    };
    await dp.sync();
    const before = dp.stats().kernel;
    connection();
    // The same tuple again (a client's tcp_tw_reuse, or a close by RST): the entry still
    // carries the first connection's FIN, and this SYN starts a connection all the same.
    connection();
    await dp.sync();
    const s = dp.stats().kernel;
    assert.equal(
      s.cacheHits! - before.cacheHits!,
      10,
      "each connection's 5 packets from its SYN+ACK to its FIN",
    );
    assert.equal(
      s.cacheEvictions! - before.cacheEvictions!,
      2,
      'the two FINs release; nothing else is evicted',
    );
    assert.equal(s.lostPackets! - before.lostPackets!, 0);
    const t = [...flows.flows.values()].filter((f) => f.srcPort === 40000 || f.dstPort === 40000);
    assert.equal(t.length, 1);
    assert.equal(t[0]!.origPackets + t[0]!.replyPackets, 16);
  });

  test('IPv6 through its cache: a UDP flow after its first packet, a TCP 4-tuple twice as IPv4; exact counts', async () => {
    const [FIN, SYN, ACK] = [0x01, 0x02, 0x10];
    const A = [0xfd, 0, ...new Array(13).fill(0), 0x0a];
    const B = [0xfd, 0, ...new Array(13).fill(0), 0x0b];
    const up = (l4: number[], next = 6) => dp.testRun(ether(0x86dd, ipv6(next, A, B, l4)), true);
    const down = (l4: number[]) => dp.testRun(ether(0x86dd, ipv6(6, B, A, l4)), true);
    await dp.sync();
    const before = dp.stats().kernel;
    for (let i = 0; i < 4; i++) up(udp(41000, 53, 20), 17); // the first makes the entry, 3 hits
    for (let round = 0; round < 2; round++) {
      up(tcp(42000, 80, SYN));
      down(tcp(80, 42000, SYN | ACK));
      up(tcp(42000, 80, ACK));
      up(tcp(42000, 80, ACK, 64));
      down(tcp(80, 42000, ACK, 64));
      up(tcp(42000, 80, FIN | ACK));
      down(tcp(80, 42000, FIN | ACK));
      up(tcp(42000, 80, ACK));
    }
    await dp.sync();
    const s = dp.stats().kernel;
    // UDP: 3 hits, added by the drain from the slot; TCP: 5 per connection, at its FIN.
    assert.equal(s.cacheHits! - before.cacheHits!, 3 + 10);
    assert.equal(s.cacheEvictions! - before.cacheEvictions!, 2, 'the two FINs release');
    assert.equal(s.lostPackets! - before.lostPackets!, 0);
    const v6 = [...flows.flows.values()].filter((f) => f.srcIp.includes(':'));
    const byPort = new Map(v6.map((f) => [Math.max(f.srcPort, f.dstPort), f.origPackets + f.replyPackets]));
    assert.deepEqual(Object.fromEntries(byPort), { 41000: 4, 42000: 16 });
  });
});
