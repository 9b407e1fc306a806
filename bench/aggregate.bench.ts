// Hot path from datapath updates to written flow log lines, at each aggregation kind,
// with 100k active connections: observe() rate on one core, flush time, resident memory.
//
//   node bench/aggregate.bench.ts [connections=100000] [rounds=5]
//
// Update objects are built before timing, with a fresh key string per update (as the
// decoder produces), so observe() pays the string hashing a real drain would.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { type AggregationKind, serializeRecord } from '../src/aggregate/record.ts';
import { type ConnectionUpdate, Hook, InitiatorHow } from '../src/datapath/types.ts';
import type { PodMeta } from '../src/enrich/kube.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';
import { FileSink } from '../src/export/file.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const N = Number(process.argv[2] ?? 100_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const T0 = Date.UTC(2025, 0, 1);

// 2,000 pods in 100 ReplicaSets (20 pods each) on 10.1.x.y; peers: pods, unknown pvt, pub.
const pods: PodMeta[] = [];
for (let i = 0; i < 2000; i++) {
  const rs = i % 100;
  pods.push({
    name: `app${rs}-5d8f7c-${i}`,
    namespace: `ns${rs % 10}`,
    generateName: `app${rs}-5d8f7c-`,
    labels: { app: `app${rs}`, 'pod-template-hash': '5d8f7c', tier: rs % 2 ? 'fe' : 'be' },
    ips: [`10.1.${i >> 8}.${i & 255}`],
    nodeName: 'node1',
    hostNetwork: false,
  });
}
const podIp = (i: number) => `10.1.${(i % 2000) >> 8}.${(i % 2000) & 255}`;
const peerIp = (i: number) =>
  i % 4 === 0
    ? `192.168.${(i >> 8) & 255}.${i & 255}`
    : i % 4 === 1
      ? `34.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
      : podIp(i * 7 + 3);

const CHUNK = 10_000;

/** Updates [from, from + CHUNK) of a round, keys as flat strings like a decoder's. */
function updates(round: number, from: number): ConnectionUpdate[] {
  const out: ConnectionUpdate[] = [];
  for (let i = from; i < Math.min(N, from + CHUNK); i++) {
    const local = podIp(i);
    const peer = peerIp(i);
    const outbound = i % 2 === 0;
    const src = outbound ? local : peer;
    const dst = outbound ? peer : local;
    const sport = 32768 + (i % 28000);
    const dport = 8000 + Math.floor(i / 20_000); // (iface, sport, dport) unique per i
    const proto = i % 10 === 9 ? 17 : 6;
    const iface = `cali${(i % 2000).toString(16).padStart(11, '0')}`;
    out.push({
      key: Buffer.from(`${iface}|${proto}|${src}:${sport}|${dst}:${dport}`).toString('latin1'),
      ifindex: 10 + (i % 2000),
      interfaceName: iface,
      family: 4,
      proto,
      srcIp: src,
      dstIp: dst,
      srcPort: sport,
      dstPort: dport,
      icmpType: 0,
      icmpCode: 0,
      origPackets: 10,
      origBytes: 1400 + round,
      replyPackets: 8,
      replyBytes: 900,
      origTcpFlags: round === 0 ? 0x02 : 0x10,
      replyTcpFlags: 0x10,
      firstSeenMs: T0 + round * 1000,
      lastSeenMs: T0 + round * 1000 + 500,
      initiatorHow: InitiatorHow.syn,
      firstHook: outbound ? Hook.ingress : Hook.egress,
      firstFromInitiator: true,
    });
  }
  return out;
}

const rssMB = () => process.memoryUsage().rss / 2 ** 20;

interface Row {
  kind: AggregationKind;
  createRate: number;
  observeRate: number;
  records: number;
  flush1Ms: number;
  flushMs: number;
  objectPathMs: number;
  writeMs: number;
  rss: number;
  heap: number;
}

async function runKind(kind: AggregationKind, dir: string): Promise<Row> {
  gc();
  const resolver = new EndpointResolver({
    nodeName: 'node1',
    hostEndpoints: false,
    networkSets: false,
    historyMs: 600_000,
  });
  resolver.update({ pods, services: [], nodes: [], namespaces: [], networkSets: [] }, T0);
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver,
    startTimeMs: T0,
    kindForAllowed: kind,
    kindForDenied: kind,
    idleTimeoutMs: 3_600_000,
  });

  // Round 0: every connection is new.
  let createNs = 0;
  for (let from = 0; from < N; from += CHUNK) {
    const batch = updates(0, from);
    const s = process.hrtime.bigint();
    for (let i = 0; i < batch.length; i++) agg.observe(batch[i]!);
    createNs += Number(process.hrtime.bigint() - s);
  }
  const createRate = N / (createNs / 1e9);
  let t = performance.now();

  // First flush: resolves endpoints and builds record keys for every connection.
  t = performance.now();
  agg.flush(T0 + 10_000);
  const flush1Ms = performance.now() - t;

  // Steady state: rounds of deltas for known connections.
  let observeNs = 0;
  for (let r = 1; r <= ROUNDS; r++) {
    for (let from = 0; from < N; from += CHUNK) {
      const batch = updates(r, from);
      const s = process.hrtime.bigint();
      for (let i = 0; i < batch.length; i++) agg.observe(batch[i]!);
      observeNs += Number(process.hrtime.bigint() - s);
    }
  }
  const observeRate = (N * ROUNDS) / (observeNs / 1e9);

  // Steady-state flush straight to JSON lines (the daemon's path).
  t = performance.now();
  let lines = agg.flushLines(T0 + 20_000);
  const flushMs = performance.now() - t;
  const records = lines.length;

  const sink = new FileSink({ directory: join(dir, `k${kind}`), maxFileBytes: 100 << 20, maxFiles: 5 });
  t = performance.now();
  sink.write(lines);
  await sink.flush();
  const writeMs = performance.now() - t;
  await sink.close();
  lines = [];

  // For comparison: the object path, flush() + JSON.stringify per record (re-feed one round).
  for (let from = 0; from < N; from += CHUNK) for (const u of updates(ROUNDS + 1, from)) agg.observe(u);
  t = performance.now();
  const recs = agg.flush(T0 + 30_000);
  for (const r of recs) serializeRecord(r);
  const objectPathMs = performance.now() - t;
  recs.length = 0;

  gc();
  const rss = rssMB();
  const heap = process.memoryUsage().heapUsed / 2 ** 20;
  if (agg.stats().connections !== N)
    throw new Error(`expected ${N} connections, have ${agg.stats().connections}`);
  return { kind, createRate, observeRate, records, flush1Ms, flushMs, objectPathMs, writeMs, rss, heap };
}

// Each kind runs in its own process so that RSS is that kind's alone.
const only = process.argv[4];
if (only !== undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-'));
  try {
    const row = await runKind(Number(only) as AggregationKind, dir);
    process.stdout.write(JSON.stringify(row));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  gc();
  const baseRss = rssMB();
  const rows: Row[] = [];
  for (const k of [0, 1, 2, 3] as const) {
    const out = execFileSync(process.execPath, [process.argv[1]!, String(N), String(ROUNDS), String(k)], {
      encoding: 'utf8',
    });
    rows.push(JSON.parse(out) as Row);
  }
  const f = (n: number, d = 0) => n.toFixed(d);
  console.log(
    `\nflowlogd aggregate bench — ${N} connections, ${ROUNDS} update rounds, node ${process.version}, ${cpus()[0]?.model ?? '?'}`,
  );
  console.log(`RSS of a bare process with the modules loaded: ${f(baseRss)} MB\n`);
  console.log(
    '| kind | new conns/s | observe updates/s | records | 1st flush ms (resolve) | flush→lines ms | write to file ms | flush()+stringify ms | RSS MB | heap MB |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.kind} | ${f(r.createRate / 1e6, 2)} M | ${f(r.observeRate / 1e6, 2)} M | ${r.records} | ${f(r.flush1Ms)} | ${f(r.flushMs)} | ${f(r.writeMs)} | ${f(r.objectPathMs)} | ${f(r.rss)} | ${f(r.heap)} |`,
    );
  }
}
