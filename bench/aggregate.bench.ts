// Hot path from datapath updates to written flow log lines, at each aggregation kind,
// with 100k active connections: observe() rate on one core, flush time, memory.
//
//   node dist/bench/aggregate.bench.js [connections=100000] [rounds=5]
//
// Each kind runs twice, each run in its own process: with every connection's conntrack
// entry (the daemon's case: its conntrack listener reports NEW for each, read through the
// daemon's ConntrackEventView) and without (no conntrack). A process does only what the
// daemon does (observe, flushLineIterator, batches, file sink), so its memory is the daemon's.
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
import type { AggregationKind } from '../src/aggregate/record.ts';
import { returnFreedMemory } from '../src/common/memory.ts';
import { releaseNativeFreeMemory } from '../src/datapath/datapath.ts';
import { ConntrackEventView, FlowRecordView } from '../src/datapath/decode.ts';
import {
  CT_EVENT_DUMP,
  CtRecord,
  CtTuple,
  FlowCounters,
  FlowKey,
  RING_RECORD_CONNTRACK,
  RING_RECORD_FLOW,
  RING_RECORD_SIZE,
  Ring,
} from '../src/datapath/layout.ts';
import { Hook, InitiatorHow } from '../src/datapath/types.ts';
import type { PodMeta } from '../src/enrich/kube.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';
import { inBatches, LineBatchBuilder } from '../src/export/batch.ts';
import { FileSink } from '../src/export/file.ts';
import { writeInBatches } from '../src/export/write.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (options?: object) => void;

const N = Number(process.argv[2] ?? 100_000);
const ROUNDS = Number(process.argv[3] ?? 5);
/** Processes per (kind, conntrack); figures are medians (this VM's timings vary ±30% run to run). */
const REPEAT = 3;
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
const ctView = new ConntrackEventView(ring);

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

/** Encodes connection i's conntrack entry (as the listener's start-up dump reports it) into `slot`. */
function encodeCt(slot: number, i: number): void {
  const base = slot * RING_RECORD_SIZE;
  ring.fill(0, base, base + RING_RECORD_SIZE);
  dv.setUint32(base + Ring.type, RING_RECORD_CONNTRACK, true);
  const outbound = i % 2 === 0;
  const client = outbound ? podIp(i) : peerIp(i);
  const server = outbound ? peerIp(i) : podIp(i);
  const cport = 32768 + (i % 28000);
  const sport = 8000 + Math.floor(i / 20_000);
  ring[base + CtRecord.event] = CT_EVENT_DUMP;
  ring[base + CtRecord.proto] = i % 10 === 9 ? 17 : 6;
  ring[base + CtRecord.family] = 4;
  dv.setUint32(base + CtRecord.id, i + 1, true);
  for (const [t, src, dst, sp, dp] of [
    [CtRecord.orig, client, server, cport, sport],
    [CtRecord.reply, server, client, sport, cport],
  ] as const) {
    setAddr(base + t + CtTuple.src, src);
    setAddr(base + t + CtTuple.dst, dst);
    dv.setUint16(base + t + CtTuple.sport, sp, true);
    dv.setUint16(base + t + CtTuple.dport, dp, true);
  }
  setU64(base + CtRecord.time_ns, T0 * 1e6);
}

/** Feeds every connection's conntrack entry; returns the ns spent in observeConntrack(). */
function feedConntrack(agg: FlowAggregator): number {
  let ns = 0;
  for (let from = 0; from < N; from += CHUNK) {
    const n = Math.min(CHUNK, N - from);
    for (let j = 0; j < n; j++) encodeCt(j, from + j);
    const s = process.hrtime.bigint();
    for (let j = 0; j < n; j++) if (ctView.at(j) === RING_RECORD_CONNTRACK) agg.observeConntrack(ctView);
    ns += Number(process.hrtime.bigint() - s);
  }
  return ns;
}

/**
 * Feeds one round of updates for every connection; returns the ns spent in observe().
 * With `prepare`, calls prepareKeys(20 ms) after each ring-full of records, as the
 * daemon's timer does between drains, and adds the ns it spent to `prepare.ns`.
 */
function feed(agg: FlowAggregator, round: number, prepare?: { ns: number }): number {
  let ns = 0;
  for (let from = 0; from < N; from += CHUNK) {
    const n = Math.min(CHUNK, N - from);
    for (let j = 0; j < n; j++) encode(j, from + j, round);
    const s = process.hrtime.bigint();
    for (let j = 0; j < n; j++) if (view.at(j) === RING_RECORD_FLOW) agg.observe(view);
    ns += Number(process.hrtime.bigint() - s);
    if (prepare) {
      const p = process.hrtime.bigint();
      agg.prepareKeys(20);
      prepare.ns += Number(process.hrtime.bigint() - p);
    }
  }
  return ns;
}

const MB = 2 ** 20;

interface Row {
  kind: AggregationKind;
  conntrack: boolean;
  createRate: number;
  observeRate: number;
  records: number;
  /** Every line built and encoded into batches, then dropped (the daemon's flush, without the write). */
  flush1Ms: number;
  /** Whether keys were built ahead (prepareKeys, the daemon's way), and the ms that took. */
  prepared: boolean;
  prepareMs: number;
  /** The first flush of a run without prepareKeys (the median of the cold runs). */
  coldFlush1Ms: number;
  flushMs: number;
  /** The daemon's flush: batches into the file sink, each written before the next is built. */
  writeMs: number;
  dropped: number;
  /** Right after the last flush, and after V8's memory reducer (see below), 100k connections held. */
  rss: number;
  settledRss: number;
  heap: number;
  /** Peak RSS of the process (the transient lines and garbage of a flush included). */
  maxRss: number;
}

/** The daemon's flush without the write: every line built and encoded into batches, then let go. */
function buildLines(agg: FlowAggregator, endMs: number): { ms: number; lines: number } {
  const t = performance.now();
  let lines = 0;
  for (const batch of inBatches(agg.flushLineIterator(endMs), batches)) lines += batch.count;
  return { ms: performance.now() - t, lines };
}

/** The daemon's loop (src/export/write.ts): 1 MiB batches, each written before the next is built. */
const batches = new LineBatchBuilder(1 << 20, 8192);
async function flushToSink(agg: FlowAggregator, endMs: number, sink: FileSink): Promise<void> {
  await writeInBatches(agg.flushLineIterator(endMs), batches, sink, 60_000);
}

async function runKind(
  kind: AggregationKind,
  conntrack: boolean,
  prepared: boolean,
  dir: string,
): Promise<Row> {
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

  // Conntrack's entries come first (its dump at start-up), then round 0: every connection new.
  if (conntrack) feedConntrack(agg);
  // The daemon builds new connections' keys between drains; a cold run leaves it all to the flush.
  const prep = { ns: 0 };
  const createRate = N / (feed(agg, 0, prepared ? prep : undefined) / 1e9);
  if (prepared) {
    const p = process.hrtime.bigint();
    agg.prepareKeys(Number.POSITIVE_INFINITY); // the rest: the daemon's timer gets there in seconds
    prep.ns += Number(process.hrtime.bigint() - p);
  }

  // First flush: resolves endpoints and builds record keys for every connection.
  const first = buildLines(agg, T0 + 10_000);

  // Steady state: rounds of deltas for known connections.
  let observeNs = 0;
  for (let r = 1; r <= ROUNDS; r++) observeNs += feed(agg, r);
  const observeRate = (N * ROUNDS) / (observeNs / 1e9);
  const steady = buildLines(agg, T0 + 20_000);

  // The daemon's flush, to flows.log.
  const sink = new FileSink({ directory: join(dir, `k${kind}`), maxFileBytes: 100 << 20, maxFiles: 5 });
  feed(agg, ROUNDS + 1);
  const t = performance.now();
  await flushToSink(agg, T0 + 25_000, sink);
  const writeMs = performance.now() - t;
  const dropped = sink.stats().droppedLines;
  await sink.close();

  gc();
  const rss = process.memoryUsage().rss / MB;
  // V8 keeps the pages a flush's garbage freed pooled until its memory reducer runs, about
  // 8-10 s after activity dies down (measured: kind 0, 496 MB -> 195 MB). This GC is the one
  // the reducer runs, now, so the figure is what the daemon holds between flushes.
  await returnFreedMemory(releaseNativeFreeMemory, 'sync');
  const mem = process.memoryUsage();
  const st = agg.stats();
  if (st.connections !== N) throw new Error(`expected ${N} connections, have ${st.connections}`);
  if (conntrack && st.conntrackJoined !== N)
    throw new Error(`expected ${N} connections joined to conntrack, have ${st.conntrackJoined}`);
  return {
    kind,
    conntrack,
    createRate,
    observeRate,
    records: steady.lines,
    flush1Ms: first.ms,
    prepared,
    prepareMs: prep.ns / 1e6,
    coldFlush1Ms: Number.NaN,
    flushMs: steady.ms,
    writeMs,
    dropped,
    rss,
    settledRss: mem.rss / MB,
    heap: mem.heapUsed / MB,
    maxRss: process.resourceUsage().maxRSS / 1024,
  };
}

// Each (kind, conntrack) runs in its own process so that RSS is that run's alone.
const only = process.argv[4];
if (only !== undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-'));
  try {
    const row = await runKind(
      Number(only) as AggregationKind,
      process.argv[5] === 'ct',
      process.argv[6] !== 'cold',
      dir,
    );
    process.stdout.write(JSON.stringify(row));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  const baseRss = process.memoryUsage().rss / MB;
  const baseHeap = process.memoryUsage().heapUsed / MB;
  const rows: Row[] = [];
  for (const ct of ['ct', 'no-ct'])
    for (const k of [0, 1, 2, 3] as const) {
      // Same Node flags as this process (run.ts gives the daemon's: --max-semi-space-size=8).
      // REPEAT processes, interleaved with nothing else; each figure is their median.
      const runs: Row[] = [];
      const cold: Row[] = [];
      for (let r = 0; r < REPEAT; r++)
        for (const mode of ['prepared', 'cold']) {
          const out = execFileSync(
            process.execPath,
            [...process.execArgv, process.argv[1]!, String(N), String(ROUNDS), String(k), ct, mode],
            { encoding: 'utf8' },
          );
          (mode === 'cold' ? cold : runs).push(JSON.parse(out) as Row);
        }
      const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const med = (f: (r: Row) => number) => median(runs.map(f));
      rows.push({
        ...runs[0]!,
        prepareMs: med((r) => r.prepareMs),
        coldFlush1Ms: median(cold.map((r) => r.flush1Ms)),
        createRate: med((r) => r.createRate),
        observeRate: med((r) => r.observeRate),
        flush1Ms: med((r) => r.flush1Ms),
        flushMs: med((r) => r.flushMs),
        writeMs: med((r) => r.writeMs),
        dropped: Math.max(...runs.map((r) => r.dropped)),
        rss: med((r) => r.rss),
        settledRss: med((r) => r.settledRss),
        heap: med((r) => r.heap),
        maxRss: med((r) => r.maxRss),
      });
    }
  const f = (n: number, d = 0) => n.toFixed(d);
  console.log(
    `\nflowlogd aggregate bench — ${N} connections, ${ROUNDS} update rounds, median of ${REPEAT} processes each (dropped lines: the most), node ${process.version}, ${cpus()[0]?.model ?? '?'}`,
  );
  console.log(`bare process with the modules loaded: RSS ${f(baseRss)} MB, heap ${f(baseHeap)} MB\n`);
  console.log(
    '| kind | conntrack entries | new conns/s | observe updates/s | records | keys built ahead ms | 1st flush→lines ms (cold) | flush→lines ms | flush+write to file ms (dropped lines) | heap MB | RSS after flush MB | RSS settled MB | peak RSS MB |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.kind} | ${r.conntrack ? 'yes' : 'no'} | ${f(r.createRate / 1e6, 2)} M | ${f(r.observeRate / 1e6, 2)} M | ${r.records} | ${f(r.prepareMs)} | ${f(r.flush1Ms)} (${f(r.coldFlush1Ms)}) | ${f(r.flushMs)} | ${f(r.writeMs)} (${r.dropped}) | ${f(r.heap)} | ${f(r.rss)} | ${f(r.settledRss)} | ${f(r.maxRss)} |`,
    );
  }
}
