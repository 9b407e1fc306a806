// Hot path from datapath updates to written flow log lines, at each aggregation kind,
// with 100k active connections: observe() rate on one core, flush time, memory.
//
//   node bench/aggregate.bench.ts [connections=100000] [rounds=5]
//
// Updates reach observe() the way the daemon delivers them: ring records encoded into a
// reused 8192-record buffer (as the addon fills it, untimed), read through one reused
// FlowRecordView (src/datapath/decode.ts) whose getters decode on demand, so observe()
// pays the key string, the address formatting and the hashing a real drain does, and
// the bench holds no update objects of its own.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { type AggregationKind, serializeRecord } from '../src/aggregate/record.ts';
import { FlowRecordView } from '../src/datapath/decode.ts';
import { FlowCounters, FlowKey, RING_RECORD_FLOW, RING_RECORD_SIZE, Ring } from '../src/datapath/layout.ts';
import { Hook, InitiatorHow } from '../src/datapath/types.ts';
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
const ifName = (ifindex: number) => `cali${(ifindex - 10).toString(16).padStart(11, '0')}`;
const names = new Map<number, string>();
for (let i = 0; i < 2000; i++) names.set(10 + i, ifName(10 + i));

/** IPv4 of connection i's local pod and peer, as 32-bit numbers. */
const podIp = (i: number) => (10 << 24) | (1 << 16) | (((i % 2000) >> 8) << 8) | ((i % 2000) & 255);
const peerIp = (i: number) =>
  i % 4 === 0
    ? ((192 << 24) | (168 << 16) | (((i >> 8) & 255) << 8) | (i & 255)) >>> 0
    : i % 4 === 1
      ? ((34 << 24) | (((i >> 16) & 255) << 16) | (((i >> 8) & 255) << 8) | (i & 255)) >>> 0
      : podIp(i * 7 + 3);

const CHUNK = 8192; // the daemon's READ_RECORDS
const ring = new Uint8Array(CHUNK * RING_RECORD_SIZE);
const dv = new DataView(ring.buffer);
const view = new FlowRecordView(ring, (i) => names.get(i) ?? '');

function setAddr(off: number, ip: number): void {
  ring.fill(0, off, off + 10);
  ring[off + 10] = 0xff;
  ring[off + 11] = 0xff;
  dv.setUint32(off + 12, ip >>> 0, false);
}
function setU64(off: number, v: number): void {
  dv.setUint32(off, v % 2 ** 32, true);
  dv.setUint32(off + 4, Math.floor(v / 2 ** 32), true);
}

/** Encodes connection i's update of `round` into ring slot `slot` (side a initiated). */
function encode(slot: number, i: number, round: number): void {
  const base = slot * RING_RECORD_SIZE;
  ring.fill(0, base, base + RING_RECORD_SIZE);
  dv.setUint32(base + Ring.type, RING_RECORD_FLOW, true);
  const outbound = i % 2 === 0;
  const local = podIp(i);
  const peer = peerIp(i);
  const k = base + Ring.key;
  dv.setUint32(k + FlowKey.ifindex, 10 + (i % 2000), true);
  setAddr(k + FlowKey.addr_a, outbound ? local : peer);
  setAddr(k + FlowKey.addr_b, outbound ? peer : local);
  dv.setUint16(k + FlowKey.port_a, 32768 + (i % 28000), true);
  dv.setUint16(k + FlowKey.port_b, 8000 + Math.floor(i / 20_000), true); // (iface, sport, dport) unique per i
  ring[k + FlowKey.proto] = i % 10 === 9 ? 17 : 6;
  ring[k + FlowKey.family] = 4;
  const c = base + Ring.counters;
  setU64(c + FlowCounters.packets, 10);
  setU64(c + FlowCounters.packets + 8, 8);
  setU64(c + FlowCounters.bytes, 1400 + round);
  setU64(c + FlowCounters.bytes + 8, 900);
  setU64(c + FlowCounters.first_seen_ns, (T0 + round * 1000) * 1e6);
  setU64(c + FlowCounters.last_seen_ns, (T0 + round * 1000 + 500) * 1e6);
  dv.setUint32(c + FlowCounters.tcp_flags, (round === 0 ? 0x02 : 0x10) | (0x10 << 8), true);
  ring[c + FlowCounters.initiator] = 0;
  ring[c + FlowCounters.initiator_how] = InitiatorHow.syn;
  ring[c + FlowCounters.first_hook] = outbound ? Hook.ingress : Hook.egress;
  ring[c + FlowCounters.first_dir] = 0; // the initiator sent the first packet
}

/** Feeds one round of updates for every connection; returns the ns spent in observe(). */
function feed(agg: FlowAggregator, round: number): number {
  let ns = 0;
  for (let from = 0; from < N; from += CHUNK) {
    const n = Math.min(CHUNK, N - from);
    for (let j = 0; j < n; j++) encode(j, from + j, round);
    const s = process.hrtime.bigint();
    for (let j = 0; j < n; j++) if (view.at(j) === RING_RECORD_FLOW) agg.observe(view);
    ns += Number(process.hrtime.bigint() - s);
  }
  return ns;
}

const MB = 2 ** 20;

interface Row {
  kind: AggregationKind;
  createRate: number;
  observeRate: number;
  records: number;
  flush1Ms: number;
  flushMs: number;
  objectPathMs: number;
  writeMs: number;
  /** Lines the file sink dropped (its queue is bounded). */
  dropped: number;
  /** flushLineChunks() into the file sink, waiting for each chunk to be written. */
  chunkedMs: number;
  chunkedDropped: number;
  /** After a forced GC, with 100k connections held and no lines or records alive. */
  rss: number;
  heap: number;
  /** Peak RSS of the process (includes the transient lines of one flush and the file write). */
  maxRss: number;
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
  const createRate = N / (feed(agg, 0) / 1e9);

  // First flush to lines (the daemon's path): resolves endpoints and builds record keys
  // for every connection.
  let t = performance.now();
  let lines = agg.flushLines(T0 + 10_000);
  const flush1Ms = performance.now() - t;
  lines = [];

  // Steady state: rounds of deltas for known connections.
  let observeNs = 0;
  for (let r = 1; r <= ROUNDS; r++) observeNs += feed(agg, r);
  const observeRate = (N * ROUNDS) / (observeNs / 1e9);

  // Steady-state flush straight to JSON lines.
  t = performance.now();
  lines = agg.flushLines(T0 + 20_000);
  const flushMs = performance.now() - t;
  const records = lines.length;

  const sink = new FileSink({ directory: join(dir, `k${kind}`), maxFileBytes: 100 << 20, maxFiles: 5 });
  t = performance.now();
  sink.write(lines);
  await sink.flush();
  const writeMs = performance.now() - t;
  const dropped = sink.stats().droppedLines;
  lines = [];

  // The same, in chunks of 8192 lines, each written before the next is built (re-feed one round).
  feed(agg, ROUNDS + 1);
  t = performance.now();
  for (const chunk of agg.flushLineChunks(T0 + 25_000)) {
    sink.write(chunk);
    await sink.flush();
  }
  const chunkedMs = performance.now() - t;
  const chunkedDropped = sink.stats().droppedLines - dropped;
  await sink.close();

  // For comparison: the object path, flush() + JSON.stringify per record (re-feed one round).
  feed(agg, ROUNDS + 2);
  t = performance.now();
  let recs = agg.flush(T0 + 30_000);
  for (const r of recs) serializeRecord(r);
  const objectPathMs = performance.now() - t;
  recs = [];

  gc();
  gc();
  const mem = process.memoryUsage();
  if (agg.stats().connections !== N)
    throw new Error(`expected ${N} connections, have ${agg.stats().connections}`);
  return {
    kind,
    createRate,
    observeRate,
    records,
    flush1Ms,
    flushMs,
    objectPathMs,
    writeMs,
    dropped,
    chunkedMs,
    chunkedDropped,
    rss: mem.rss / MB,
    heap: mem.heapUsed / MB,
    maxRss: process.resourceUsage().maxRSS / 1024,
  };
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
  const baseRss = process.memoryUsage().rss / MB;
  const baseHeap = process.memoryUsage().heapUsed / MB;
  const rows: Row[] = [];
  for (const k of [0, 1, 2, 3] as const) {
    // Same Node flags as this process (run.ts gives the daemon's: --max-semi-space-size=16).
    const out = execFileSync(
      process.execPath,
      [...process.execArgv, process.argv[1]!, String(N), String(ROUNDS), String(k)],
      {
        encoding: 'utf8',
      },
    );
    rows.push(JSON.parse(out) as Row);
  }
  const f = (n: number, d = 0) => n.toFixed(d);
  console.log(
    `\nflowlogd aggregate bench — ${N} connections, ${ROUNDS} update rounds, node ${process.version}, ${cpus()[0]?.model ?? '?'}`,
  );
  console.log(`bare process with the modules loaded: RSS ${f(baseRss)} MB, heap ${f(baseHeap)} MB\n`);
  console.log(
    '| kind | new conns/s | observe updates/s | records | 1st flush→lines ms | flush→lines ms | write to file ms (dropped lines) | chunked flush+write ms (dropped) | flush()+stringify ms | heap MB | RSS MB | peak RSS MB |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.kind} | ${f(r.createRate / 1e6, 2)} M | ${f(r.observeRate / 1e6, 2)} M | ${r.records} | ${f(r.flush1Ms)} | ${f(r.flushMs)} | ${f(r.writeMs)} (${r.dropped}) | ${f(r.chunkedMs)} (${r.chunkedDropped}) | ${f(r.objectPathMs)} | ${f(r.heap)} | ${f(r.rss)} | ${f(r.maxRss)} |`,
    );
  }
}
