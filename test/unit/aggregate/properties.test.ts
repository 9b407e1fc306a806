// Property tests: random connections and updates over several flushes, through all four
// kinds at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import type { AggregationKind, FlowLogRecord } from '../../../src/aggregate/record.ts';
import type { ConnectionUpdate } from '../../../src/datapath/types.ts';
import { Hook, TcpFlag } from '../../../src/datapath/types.ts';
import { metadata, pod, resolverWith, T0 } from './helpers.ts';

const IPS = [
  '10.0.0.1',
  '10.0.0.2',
  '10.0.0.3',
  '10.0.0.4',
  '192.168.5.5',
  '8.8.8.8',
  'fd00::1',
  '2001:db8::1',
];
const MD = metadata({
  pods: [
    pod('a', 'web-x-1', '10.0.0.1', 'web-x-', { app: 'web', v: '1' }),
    pod('a', 'web-x-2', '10.0.0.2', 'web-x-', { app: 'web', v: '2' }),
    pod('b', 'db-0', '10.0.0.3', null, { app: 'db' }),
    pod('b', 'v6-1', 'fd00::1', 'v6-', {}),
  ],
  services: [
    {
      name: 's',
      namespace: 'b',
      clusterIps: ['10.0.0.4'],
      ports: [{ name: 'p', port: 80, protocol: 'TCP', targetPort: 80 }],
    },
  ],
});
const INTERVAL = 10_000;

const connArb = fc.record({
  a: fc.integer({ min: 0, max: IPS.length - 1 }),
  b: fc.integer({ min: 0, max: IPS.length - 1 }),
  sport: fc.constantFrom(1000, 2000, 3000),
  dport: fc.constantFrom(80, 443),
  proto: fc.constantFrom(6, 17, 1, 58),
  iface: fc.constantFrom('cali1', 'cali2', 'veth9'),
  deny: fc.boolean(),
});
const updArb = fc.record({
  conn: fc.nat(),
  interval: fc.integer({ min: 0, max: 4 }),
  reversed: fc.boolean(),
  how: fc.integer({ min: 0, max: 3 }),
  hook: fc.constantFrom(Hook.ingress, Hook.egress),
  fromInit: fc.boolean(),
  op: fc.nat(1000),
  ob: fc.nat(1_000_000),
  rp: fc.nat(1000),
  rb: fc.nat(1_000_000),
  of: fc.constantFrom(0, TcpFlag.ACK, TcpFlag.FIN | TcpFlag.ACK, TcpFlag.RST),
  rf: fc.constantFrom(0, TcpFlag.ACK, TcpFlag.FIN | TcpFlag.ACK),
});

type Sums = [number, number, number, number, number, number, number];
function sums(recs: FlowLogRecord[]): Sums {
  const s: Sums = [0, 0, 0, 0, 0, 0, 0];
  for (const r of recs) {
    s[0] += r.bytes_in;
    s[1] += r.bytes_out;
    s[2] += r.packets_in;
    s[3] += r.packets_out;
    s[4] += r.num_flows;
    s[5] += r.num_flows_started;
    s[6] += r.num_flows_completed;
  }
  return s;
}

test('conservation across kinds, flow counts consistent, each connection started once (unless carried in) and completed once', () => {
  fc.assert(
    fc.property(
      fc.array(connArb, { minLength: 1, maxLength: 12 }),
      fc.array(updArb, { maxLength: 80 }),
      (conns, upds) => {
        const kinds: AggregationKind[] = [0, 1, 2, 3];
        const make = (k: AggregationKind) =>
          new FlowAggregator({
            nodeName: 'n',
            resolver: resolverWith(MD),
            startTimeMs: T0,
            kindForAllowed: k,
            kindForDenied: k,
            idleTimeoutMs: 100 * INTERVAL,
            tcpIdleTimeoutMs: 100 * INTERVAL,
          });
        const aggs = kinds.map(make);
        // Twins fed the same updates, flushed to lines: must equal JSON.stringify of the records.
        const twins = kinds.map(make);
        const byInterval: ConnectionUpdate[][] = [[], [], [], [], []];
        const distinct = new Set<string>();
        // Allowed TCP first seen without its opening: carried in, never started.
        const carried = new Set<string>();
        const inputTotals = [0, 0, 0, 0, 0].map(() => [0, 0]);
        // Only a connection's last update may end it (FIN/RST): a packet after the end would
        // be a new connection on the same 5-tuple, which this property does not model.
        const sorted = [...upds].sort((x, y) => x.interval - y.interval);
        const connKey = (u: (typeof upds)[number]) => {
          const c = conns[u.conn % conns.length]!;
          return `${c.iface}|${c.proto}|${c.a}:${c.sport}|${c.b}:${c.dport}`;
        };
        const lastOf = new Map<string, (typeof upds)[number]>();
        for (const u of sorted) lastOf.set(`${conns[u.conn % conns.length]!.deny}|${connKey(u)}`, u);
        for (const u0 of sorted) {
          const c = conns[u0.conn % conns.length]!;
          const key = connKey(u0);
          const u =
            lastOf.get(`${c.deny}|${key}`) === u0
              ? u0
              : { ...u0, of: u0.of & TcpFlag.ACK, rf: u0.rf & TcpFlag.ACK };
          const [s, d, sp, dp] = u.reversed ? [c.b, c.a, c.dport, c.sport] : [c.a, c.b, c.sport, c.dport];
          const icmp = c.proto === 1 || c.proto === 58;
          const t = T0 + u.interval * INTERVAL + 1;
          const x: ConnectionUpdate & { deny: boolean } = {
            key,
            ifindex: 1,
            interfaceName: c.iface,
            family: 4,
            proto: c.proto,
            srcIp: IPS[s]!,
            dstIp: IPS[d]!,
            srcPort: icmp ? 0 : sp,
            dstPort: icmp ? 0 : dp,
            icmpType: 0,
            icmpCode: 0,
            origPackets: u.op,
            origBytes: u.ob,
            replyPackets: u.rp,
            replyBytes: u.rb,
            origTcpFlags: u.of,
            replyTcpFlags: u.rf,
            firstSeenMs: t,
            lastSeenMs: t,
            initiatorHow: u.how as 0 | 1 | 2 | 3,
            firstHook: u.hook,
            firstFromInitiator: u.fromInit,
            deny: c.deny,
          };
          byInterval[u.interval]!.push(x);
          if (!distinct.has(`${c.deny}|${key}`) && !c.deny && c.proto === 6 && u.how !== 3)
            carried.add(`${c.deny}|${key}`);
          distinct.add(`${c.deny}|${key}`);
          inputTotals[u.interval]![0]! += u.ob + u.rb;
          inputTotals[u.interval]![1]! += u.op + u.rp;
        }
        const totals = kinds.map(() => [0, 0]);
        for (let i = 0; i <= 5; i++) {
          const end = i < 5 ? T0 + (i + 1) * INTERVAL : T0 + 1000 * INTERVAL; // last flush: everything idles out
          const perKind = aggs.map((a, k) => {
            for (const u of byInterval[i] ?? [])
              a.observe(u, (u as { deny?: boolean }).deny ? 'deny' : 'allow');
            const recs = a.flush(end);
            // The twin builds the keys of its first half of new connections ahead of the
            // flush (prepareKeys, as the daemon does between drains): the same lines.
            const twin = twins[k]!;
            const batch = byInterval[i] ?? [];
            batch.forEach((u, j) => {
              twin.observe(u, (u as { deny?: boolean }).deny ? 'deny' : 'allow');
              if (j === batch.length >> 1) twin.prepareKeys(Number.POSITIVE_INFINITY);
            });
            assert.deepEqual(
              [...twin.flushLineIterator(end)],
              recs.map((r) => JSON.stringify(r)),
            );
            for (const r of recs) {
              assert.ok(
                r.num_flows >= r.num_flows_started && r.num_flows >= r.num_flows_completed,
                JSON.stringify(r),
              );
              assert.ok(r.num_flows_started >= 0 && r.num_flows_completed >= 0 && r.num_flows >= 1);
              assert.ok(r.bytes_in >= 0 && r.bytes_out >= 0 && r.packets_in >= 0 && r.packets_out >= 0);
            }
            totals[k]![0]! += sums(recs)[5];
            totals[k]![1]! += sums(recs)[6];
            return sums(recs);
          });
          for (let k = 1; k < 4; k++) assert.deepEqual(perKind[k], perKind[0], `interval ${i} kind ${k}`);
          const [bi, bo, pi, po] = perKind[0]!;
          const expected = inputTotals[i] ?? [0, 0];
          assert.deepEqual([bi + bo, pi + po], expected);
        }
        for (const [started, completed] of totals) {
          assert.equal(
            started,
            distinct.size - carried.size,
            'each connection started exactly once, unless carried in',
          );
          assert.equal(
            completed,
            distinct.size,
            'each connection completed exactly once (all ended by the end)',
          );
        }
        for (const a of aggs) assert.equal(a.stats().connections, 0);
      },
    ),
    { numRuns: 300 },
  );
});
