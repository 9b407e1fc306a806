// The TC program's parser, run over hand-built frames with BPF_PROG_TEST_RUN: malformed
// and truncated packets are counted as parse failures, never as flows; unusual but valid
// ones (VLAN, QinQ, IPv4 options, IPv6 extension headers, fragments) are parsed right.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import {
  ether,
  ext8,
  fragment6,
  icmpEcho,
  ipv4,
  ipv6,
  tcp,
  udp,
  V4A,
  V4B,
  V6A,
  V6B,
} from '../../src/lab/packets.ts';
import { FlowCollector, kernelSkipReason } from './helpers.ts';

const skip = kernelSkipReason();
const TC_NEXT = -1;

describe('parser (BPF_PROG_TEST_RUN)', { skip }, () => {
  let dp: FlowDatapath;
  let flows: FlowCollector;
  before(() => {
    flows = new FlowCollector();
    // Attached nowhere: only test runs reach the program.
    dp = new FlowDatapath({ interfaces: ['flowlogd-none'] }, flows.onUpdate);
  });
  after(async () => {
    await dp?.stop();
    dp?.close();
  });

  /** Runs `frames`, drains, and returns the change in each kernel stat. */
  async function runAll(frames: Uint8Array[]) {
    const before = dp.stats().kernel;
    flows.flows.clear();
    // Test runs see the loopback device, where only egress counts (ingress repeats it).
    for (const f of frames) assert.equal(dp.testRun(f, true), TC_NEXT, 'the packet always goes on');
    await dp.sync();
    const afterStats = dp.stats().kernel;
    const delta: Record<string, number> = {};
    for (const k of Object.keys(afterStats)) delta[k] = afterStats[k]! - before[k]!;
    return delta;
  }

  const malformed: [string, Uint8Array, string][] = [
    ['ARP', ether(0x0806, new Array(28).fill(0)), 'nonIp'],
    // The kernel's test run refuses an IPv4/IPv6 EtherType with a short header, so the
    // truncated-L3 frames travel behind a VLAN tag (the parser's path is the same).
    ['Ethernet header only', ether(0x0800, [], [0x8100]), 'parseL3'],
    ['VLAN tag cut short', Uint8Array.from([...ether(0x8100, []).slice(0, 12), 0x81, 0x00, 0x00]), 'parseL2'],
    ['IPv4 IHL 4', ether(0x0800, ipv4(6, V4A, V4B, tcp(1, 2, 0x02), { ihl: 4 })), 'parseL3'],
    ['IPv4 options past the end', ether(0x0800, ipv4(17, V4A, V4B, [], { ihl: 15 })), 'parseL3'],
    ['IPv4 header cut at 12 bytes', ether(0x0800, ipv4(6, V4A, V4B, []).slice(0, 12), [0x8100]), 'parseL3'],
    [
      'TCP header cut at 10 bytes',
      ether(0x0800, ipv4(6, V4A, V4B, tcp(1000, 80, 0x02).slice(0, 10))),
      'parseL4',
    ],
    ['UDP header cut at 3 bytes', ether(0x0800, ipv4(17, V4A, V4B, [0, 53, 0])), 'parseL4'],
    ['ICMP cut at 4 bytes', ether(0x0800, ipv4(1, V4A, V4B, [8, 0, 0, 0])), 'parseL4'],
    ['IPv6 header cut at 30 bytes', ether(0x86dd, ipv6(6, V6A, V6B, []).slice(0, 30), [0x8100]), 'parseL3'],
    [
      'IPv6 version 4 in the header',
      ether(0x86dd, [0x40, ...ipv6(6, V6A, V6B, tcp(1, 2, 2)).slice(1)]),
      'parseL3',
    ],
    [
      'IPv6 extension chain longer than walked',
      ether(
        0x86dd,
        ipv6(0, V6A, V6B, [
          ...ext8(60),
          ...ext8(60),
          ...ext8(60),
          ...ext8(60),
          ...ext8(60),
          ...ext8(60),
          ...ext8(6),
          ...tcp(1, 2, 2),
        ]),
      ),
      'parseL3',
    ],
    ['IPv6 extension header cut short', ether(0x86dd, ipv6(0, V6A, V6B, [6])), 'parseL3'],
  ];

  for (const [name, frame, stat] of malformed) {
    test(`${name}: counted as ${stat}, no flow`, async () => {
      const d = await runAll([frame]);
      assert.equal(d[stat], 1, `${stat} +1`);
      const others = Object.entries(d).filter(([k, v]) => k !== stat && v !== 0);
      assert.deepEqual(others, [], 'no other counter moved');
      assert.equal(flows.flows.size, 0, 'no flow recorded');
    });
  }

  test("an IPv4 datagram in fragments is one connection, under the first fragment's ports", async () => {
    const id = [0x12, 0x34];
    const first = ipv4(17, V4A, V4B, udp(5300, 53, 24), { fragOffset: 0x2000 }); // MF, offset 0
    const second = ipv4(17, V4A, V4B, new Array(16).fill(7), { fragOffset: 4 }); // offset 32 bytes
    first.splice(4, 2, ...id);
    second.splice(4, 2, ...id);
    const d = await runAll([ether(0x0800, first), ether(0x0800, second)]);
    assert.equal(d.fragments, 1);
    assert.deepEqual(
      [...flows.flows.values()].map((f) => `${f.srcPort}>${f.dstPort} ${f.origPackets}/${f.origBytes}`),
      ['5300>53 2/88'],
    );
  });

  test('Ethernet padding is not counted: bytes are the IP length, as conntrack counts them', async () => {
    // A 28-byte IPv4/UDP packet padded to Ethernet's 60-byte minimum frame.
    const frame = Uint8Array.from([
      ...ether(0x0800, ipv4(17, V4A, V4B, udp(7777, 53))),
      ...new Array(18).fill(0),
    ]);
    assert.equal(frame.length, 60);
    await runAll([frame]);
    assert.deepEqual(
      [...flows.flows.values()].map((f) => [f.srcPort, f.origPackets, f.origBytes]),
      [[7777, 1, 28]],
    );
  });

  test('loopback ingress is not counted (its egress already was)', async () => {
    const before = dp.stats().kernel;
    flows.flows.clear();
    assert.equal(dp.testRun(ether(0x0800, ipv4(17, V4A, V4B, udp(1, 2, 4))), false), TC_NEXT);
    await dp.sync();
    assert.equal(flows.flows.size, 0);
    assert.deepEqual(dp.stats().kernel, before);
  });

  test('valid but unusual frames become the right flows', async () => {
    const frames = [
      ether(0x0800, ipv4(6, V4A, V4B, tcp(40000, 443, 0x02)), [0x8100]), // VLAN
      ether(0x0800, ipv4(17, V4A, V4B, udp(5353, 53, 10)), [0x88a8, 0x8100]), // QinQ
      ether(0x0800, ipv4(17, V4B, V4A, udp(7000, 7001, 4), { options: [1, 1, 1, 0] })), // IPv4 options
      ether(0x86dd, ipv6(0, V6A, V6B, [...ext8(60), ...ext8(43), ...ext8(6), ...tcp(50000, 8443, 0x02)])), // ext headers
      ether(0x86dd, ipv6(44, V6A, V6B, [...fragment6(17, 0, true), ...udp(6000, 6001, 16)])), // first fragment
      ether(0x86dd, ipv6(44, V6A, V6B, [...fragment6(17, 3, false), 1, 2, 3, 4, 5, 6, 7, 8])), // non-first
      ether(0x0800, ipv4(17, V4A, V4B, [9, 9, 9, 9, 9, 9, 9, 9], { fragOffset: 100 })), // v4 non-first, first unseen
      ether(0x0800, ipv4(1, V4A, V4B, icmpEcho(8, 777, 1))),
      ether(0x0800, ipv4(1, V4B, V4A, icmpEcho(0, 777, 1))), // the echo reply: same flow
    ];
    const d = await runAll(frames);
    assert.equal(d.fragments, 2, 'two non-first fragments');
    assert.equal(d.parseL2! + d.parseL3! + d.parseL4! + d.nonIp!, 0, 'no parse failures');
    const got = [...flows.flows.values()]
      .map(
        (f) =>
          `${f.proto} ${f.srcIp}:${f.srcPort} > ${f.dstIp}:${f.dstPort} ${f.origPackets}/${f.origBytes} ${f.replyPackets}/${f.replyBytes}`,
      )
      .sort();
    assert.deepEqual(got, [
      // ICMP echo request and reply in one flow, ports null-ed (0) in the view
      '1 10.0.0.1:0 > 10.0.0.2:0 1/32 1/32',
      '17 10.0.0.1:0 > 10.0.0.2:0 1/28 0/0',
      '17 10.0.0.1:5353 > 10.0.0.2:53 1/38 0/0',
      '17 10.0.0.2:7000 > 10.0.0.1:7001 1/36 0/0',
      // The IPv6 datagram's second fragment takes the ports of its first.
      '17 fd00::1:6000 > fd00::2:6001 2/128 0/0',
      '6 10.0.0.1:40000 > 10.0.0.2:443 1/40 0/0',
      '6 fd00::1:50000 > fd00::2:8443 1/84 0/0',
    ]);
  });
});
