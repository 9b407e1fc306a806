// Shipping flow logs off the node, per network sink on loopback: a kind-0 flush of
// 100k records (~1 KB lines, as the aggregator writes them) handed to the sink the way
// the daemon does (1 MiB line batches, each flush() awaited), then the time until the
// remote has acknowledged every record; records/s, the CPU and resident memory the sink
// adds to the process; the spool's write and replay rates; and the records lost when
// the NATS server is SIGKILLed mid-flush and restarted.
//
//   node bench/ship.bench.ts [--records 100000] [--rounds 3] [--sinks forward,nats]
//
// Each (sink, round) runs in a fresh process (`--child SINK`); remotes run in their own
// processes (bench/tools/ship-receiver.ts, nats-server), so the CPU measured is the
// sink's: JSON.parse of each line, msgpack or protobuf encoding, spool writes, sockets.
// Figures are medians over the rounds (this 2-core VM is shared: single runs vary).
//
// "One core", as the issue states the targets: with two or more CPUs each child runs
// under `taskset -c 0` and its remote is moved to CPU 1 (`--one-core false` to let the
// scheduler place them), so the sink's figures are one core's and the remote does not
// take its cycles. `--perf-control FIFO` (with `perf record --control fifo:FIFO -D -1`)
// enables perf over the measured part only. `--warm-up N` first ships an unmeasured
// flush of N other records through the same sink and waits for their acks: the measured
// flush is then a running daemon's next one (its code compiled, its buffers pooled)
// rather than a fresh process's first.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { type LineBatch, LineBatchBuilder } from '../src/export/batch.ts';
import { FileSink } from '../src/export/file.ts';
import { ForwardTransport } from '../src/export/forward.ts';
import { NatsTransport } from '../src/export/nats.ts';
import { NetworkSink } from '../src/export/network.ts';
import { OtlpTransport } from '../src/export/otlp.ts';
import type { Sink } from '../src/export/sink.ts';
import { Spool } from '../src/export/spool.ts';
import { within } from '../src/export/write.ts';
import { NatsServer } from '../src/lab/nats-server.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'string' },
    /** Comma-separated subset of file,forward,nats,otlp (default all, then spool and outage). */
    sinks: { type: 'string' },
    /** Batches in flight per sink (NetworkSink's window; default its own, 4). */
    window: { type: 'string' },
    /** `memory`: the bench's JetStream stream in memory instead of files (to see the server's share). */
    'nats-storage': { type: 'string' },
    /** With --child: a CPU profile of the measured part only (from the first write to the last ack). */
    profile: { type: 'string' },
    /** Children on CPU 0, their remotes on CPU 1 (default when there are 2+ CPUs). */
    'one-core': { type: 'string', default: availableParallelism() >= 2 ? 'true' : 'false' },
    /** With --child: move the remote (receiver or nats-server) to this CPU. */
    'remote-cpu': { type: 'string' },
    /** With --child: a perf control FIFO, sent `enable` and `disable` around the measured part. */
    'perf-control': { type: 'string' },
    /** Records of an unmeasured flush shipped first (a running daemon's next flush, not its first). */
    'warm-up': { type: 'string', default: '0' },
  },
});
const N = Number(values.records);
const MB = 1 << 20;
const self = fileURLToPath(import.meta.url);
const ext = self.endsWith('.js') ? '.js' : '.ts';

/** A kind-0 Calico flow log line (~1 KB), varied per record. */
function line(i: number): string {
  return JSON.stringify({
    start_time: 1_700_000_000,
    end_time: 1_700_000_300,
    source_ip: `10.1.${(i >> 8) & 255}.${i & 255}`,
    source_name: `app${i % 100}-5d8f7c-${i % 2000}`,
    source_name_aggr: `app${i % 100}-5d8f7c-*`,
    source_namespace: `ns${i % 10}`,
    nat_outgoing_ports: null,
    source_port: 30000 + (i % 30000),
    source_type: 'wep',
    source_labels: { labels: [`app=app${i % 100}`, 'pod-template-hash=5d8f7c', 'tier=backend'] },
    dest_ip: `10.2.${(i >> 6) & 255}.${i & 63}`,
    dest_name: `db${i % 50}-7f9c-${i % 500}`,
    dest_name_aggr: `db${i % 50}-7f9c-*`,
    dest_namespace: 'data',
    dest_port: 5432,
    dest_type: 'wep',
    dest_labels: { labels: [`app=db${i % 50}`, 'pod-template-hash=7f9c'] },
    dest_service_namespace: 'data',
    dest_service_name: `db${i % 50}`,
    dest_service_port: 'postgres',
    dest_service_port_num: 5432,
    proto: 'tcp',
    action: 'allow',
    reporter: i % 2 ? 'src' : 'dst',
    policies: { all_policies: [`0|data|data.allow-app${i % 100}|allow|0`] },
    bytes_in: i * 37,
    bytes_out: i * 91,
    num_flows: 1,
    num_flows_started: 1,
    num_flows_completed: 0,
    packets_in: i % 1000,
    packets_out: i % 1500,
    http_requests_allowed_in: 0,
    http_requests_denied_in: 0,
    original_source_ips: null,
    num_original_source_ips: 0,
    process_name: '-',
    num_process_names: 0,
    process_id: '-',
    num_process_ids: 0,
    host: 'node-1',
  });
}

/** The flush as the daemon encodes it: 1 MiB batches (records from, from + 1, ...). */
function batches(n: number, from = 0): LineBatch[] {
  const b = new LineBatchBuilder();
  const out: LineBatch[] = [];
  for (let i = from; i < from + n; i++) {
    b.add(line(i));
    if (b.full) out.push(b.finish());
  }
  if (b.count > 0) out.push(b.finish());
  return out;
}

function startReceiver(kind: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [join(self, '..', 'tools', `ship-receiver${ext}`), kind], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((res, rej) => {
    proc.stdout!.once('data', (d: Buffer) => res({ proc, port: Number(d.toString().trim()) }));
    proc.once('exit', (c) => rej(new Error(`receiver exited ${c}`)));
  });
}

/** Moves every thread of the remote to --remote-cpu, if given. */
function pinRemote(pid: number | undefined): void {
  if (values['remote-cpu'] === undefined || pid === undefined) return;
  execFileSync('taskset', ['-apc', values['remote-cpu'], String(pid)], { stdio: 'ignore' });
}

/** Tells a perf waiting on --perf-control to start or stop recording. */
function perfControl(cmd: 'enable' | 'disable'): void {
  if (values['perf-control'] !== undefined) writeFileSync(values['perf-control'], `${cmd}\n`);
}

/** User + system CPU of a process so far (ms), from /proc (clock ticks of 10 ms). */
function procCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let f: string;
  try {
    f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return Number.NaN; // gone (the outage run kills and restarts nats-server)
  }
  const after = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(after[11]) + Number(after[12])) * 10;
}

/**
 * Time the hypervisor ran something else on this CPU so far (ms: /proc/stat's steal, in
 * clock ticks of 10 ms): on a shared VM the measured span stretches by it, so a round
 * whose steal is large is noise, not flowlogd.
 */
function stealMs(cpu: number): number {
  const row = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  return row === undefined ? Number.NaN : Number(row.trim().split(/\s+/)[8]) * 10;
}

async function until(cond: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('bench: timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface Row {
  sink: string;
  handMs: number;
  shipMs: number;
  cpuMs: number;
  /** Of cpuMs, in the kernel (page cache and socket copies, the loopback TCP stack). */
  sysMs: number;
  rssAddedMb: number;
  acked: number;
  lost: number;
  /** Publish acks the server marked duplicate (a replay absorbed by the duplicate window). */
  duplicateAcks: number;
  /** Records stored more than once. */
  storedTwice: number;
  /** CPU of the remote's process (receiver or nats-server) over the same span: they share the 2 cores. */
  remoteCpuMs: number;
  /** CPU 0's steal time over the span (see stealMs), with --remote-cpu (the sink pinned to CPU 0). */
  stealMs: number;
}

/** The stream NatsTransport would create, held in memory. */
async function memoryStream(url: string): Promise<void> {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: 'FLOWLOGS',
    subjects: ['flowlogs.>'],
    storage: StorageType.Memory,
    duplicate_window: 120_000 * 1_000_000,
  });
  await nc.close();
}

async function child(kind: string): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-shipbench-'));
  let receiver: ChildProcess | null = null;
  let nats: NatsServer | null = null;
  try {
    let sink: Sink;
    let net: NetworkSink | null = null;
    if (kind === 'file') {
      sink = new FileSink({ directory: dir, maxFileBytes: 1 << 30, maxFiles: 2 });
    } else {
      let transport: ForwardTransport | NatsTransport | OtlpTransport;
      let maxBatchBytes = MB;
      if (kind === 'nats' || kind === 'nats-outage') {
        nats = new NatsServer(join(dir, 'store'));
        await nats.start();
        if (values['nats-storage'] === 'memory') await memoryStream(nats.url);
        transport = new NatsTransport({ url: nats.url, node: 'node-1', createStream: true });
        maxBatchBytes = 512 << 10; // under the server's 1 MiB max_payload
      } else {
        const r = await startReceiver(kind);
        receiver = r.proc;
        transport =
          kind === 'forward'
            ? new ForwardTransport({ host: '127.0.0.1', port: r.port })
            : new OtlpTransport({ endpoint: `http://127.0.0.1:${r.port}` });
      }
      net = new NetworkSink({
        name: kind,
        transport,
        spool: await Spool.open({ directory: join(dir, 'spool') }),
        node: 'node-1',
        maxBatchBytes,
        ...(values.window ? { window: Number(values.window) } : {}),
        retry: { minBackoffMs: 50, maxBackoffMs: 500, timeoutMs: 5000 },
      });
      sink = net;
    }
    const warm = Number(values['warm-up']);
    if (warm > 0) {
      for (const b of batches(warm, N)) {
        sink.write(b);
        await within(sink.flush(), 60_000);
      }
      const ns = net;
      if (ns !== null) await until(() => ns.stats().queuedLines === 0);
    }
    const all = batches(N);
    gc();
    const rss0 = process.memoryUsage().rss;
    const remotePid = nats?.pid ?? receiver?.pid;
    pinRemote(remotePid);
    const remote0 = procCpuMs(remotePid);
    const cpu0 = process.cpuUsage();
    const steal0 = stealMs(0);
    const prof = values.profile ? new Session() : null;
    if (prof !== null) {
      prof.connect();
      await prof.post('Profiler.enable');
      await prof.post('Profiler.start');
    }
    perfControl('enable');
    const t0 = performance.now();
    let killed = false;
    for (const b of all) {
      sink.write(b);
      await within(sink.flush(), 60_000);
      if (kind === 'nats-outage' && !killed && net!.shipStats().ackedLines - warm >= N * 0.3) {
        killed = true;
        await nats!.kill();
        setTimeout(() => void nats!.start().then(() => pinRemote(nats!.pid)), 500);
      }
    }
    const handMs = performance.now() - t0;
    const ns = net;
    if (ns !== null) await until(() => ns.stats().queuedLines === 0);
    else await sink.flush();
    const shipMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const steal = values['remote-cpu'] === undefined ? Number.NaN : stealMs(0) - steal0;
    perfControl('disable');
    const remoteCpuMs = procCpuMs(remotePid) - remote0;
    if (prof !== null)
      writeFileSync(values.profile!, JSON.stringify((await prof.post('Profiler.stop')).profile));
    const rssAddedMb = (process.memoryUsage().rss - rss0) / MB;
    let lost = 0;
    let storedTwice = 0;
    if (nats !== null) {
      const got = (await nats.messages('FLOWLOGS')).flatMap((m) => m.lines);
      const unique = new Set(got).size;
      lost = N + warm - unique; // the warm-up's records are other lines
      storedTwice = got.length - unique;
    }
    const duplicateAcks = net?.shipStats().duplicates ?? 0;
    const acked = (net?.shipStats().ackedLines ?? N + warm) - warm;
    await sink.close();
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const sysMs = cpu.system / 1000;
    return {
      ...{ sink: kind, handMs, shipMs, cpuMs, sysMs, rssAddedMb },
      ...{ acked, lost, duplicateAcks, storedTwice, remoteCpuMs, stealMs: steal },
    };
  } finally {
    receiver?.kill('SIGKILL');
    await nats?.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function spoolRates(): Promise<{
  writeMBs: number;
  writeRecs: number;
  replayMBs: number;
  replayRecs: number;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-spoolbench-'));
  try {
    const all = batches(N);
    const bytes = all.reduce((a, b) => a + b.bytes, 0);
    const s = await Spool.open({ directory: dir });
    let t = performance.now();
    for (const b of all) {
      s.append(Buffer.from(b.buf.subarray(0, b.bytes)), b.count, 0);
      await s.written();
    }
    const writeS = (performance.now() - t) / 1000;
    await s.close();
    t = performance.now();
    const r = await Spool.open({ directory: dir });
    let lines = 0;
    for (let e = r.nextToSend(); e !== null; e = r.nextToSend()) {
      e.sending = true;
      if ((await r.load(e)) !== null) lines += e.count;
    }
    const replayS = (performance.now() - t) / 1000;
    if (lines !== N) throw new Error(`replayed ${lines} of ${N}`);
    await r.close();
    return {
      writeMBs: bytes / MB / writeS,
      writeRecs: N / writeS,
      replayMBs: bytes / MB / replayS,
      replayRecs: N / replayS,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.child !== undefined) {
  const out = values.child === 'spool' ? await spoolRates() : await child(values.child);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

const oneCore = values['one-core'] === 'true';
const run = (what: string) => {
  const args = ['--max-semi-space-size=8', self, '--child', what, '--records', String(N)];
  if (what !== 'spool') args.push('--warm-up', values['warm-up']);
  if (values['nats-storage'] !== undefined) args.push('--nats-storage', values['nats-storage']);
  if (values.window !== undefined) args.push('--window', values.window);
  const [cmd, argv] = oneCore
    ? ['taskset', ['-c', '0', process.execPath, ...args, '--remote-cpu', '1']]
    : [process.execPath, args];
  return JSON.parse(execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] }).toString());
};
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f = (x: number, d = 0) => x.toFixed(d);
const kinds = values.sinks?.split(',') ?? ['file', 'forward', 'nats', 'otlp'];
const rows: Record<string, Row[]> = Object.fromEntries(kinds.map((k) => [k, []]));
// Interleaved rounds: each sink sees the same machine noise.
for (let r = 0; r < Number(values.rounds); r++) for (const k of kinds) rows[k]!.push(run(k) as Row);

console.log(
  `### Shipping a kind-0 flush of ${N} records (~1 KB lines) on loopback, medians of ${values.rounds}${oneCore ? ', sink on CPU 0 and remote on CPU 1' : ''}${Number(values['warm-up']) > 0 ? `, after an unmeasured flush of ${values['warm-up']}` : ''}\n`,
);
console.log(
  '| sink | flush handed over (ms) | all acknowledged (ms) | records/s acknowledged | CPU (ms) | CPU µs/record | RSS added (MB) | remote CPU (ms) | CPU 0 stolen (ms) | runs (ms acknowledged) |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const k of kinds) {
  const rs = rows[k]!;
  const ship = med(rs.map((x) => x.shipMs));
  const cpu = med(rs.map((x) => x.cpuMs));
  console.log(
    `| ${k} | ${f(med(rs.map((x) => x.handMs)))} | ${f(ship)} | ${f(N / (ship / 1000))} | ${f(cpu)} | ${f((cpu * 1000) / N, 1)} | ${f(med(rs.map((x) => x.rssAddedMb)))} | ${f(med(rs.map((x) => x.remoteCpuMs)))} | ${f(med(rs.map((x) => x.stealMs)))} | ${rs.map((x) => f(x.shipMs)).join(', ')} |`,
  );
}
if (values.sinks !== undefined) process.exit(0);
const sp = [0, 1, 2].map(() => run('spool'));
console.log(
  `\nSpool (${N} records, 1 MiB batches, /tmp): write ${f(med(sp.map((x) => x.writeMBs)))} MB/s (${f(med(sp.map((x) => x.writeRecs)))} records/s), replay after reopen ${f(med(sp.map((x) => x.replayMBs)))} MB/s (${f(med(sp.map((x) => x.replayRecs)))} records/s).`,
);
const o = run('nats-outage') as Row;
console.log(
  `\nNATS outage (server SIGKILLed at 30% acknowledged, restarted 0.5 s later): ${o.acked} of ${N} acknowledged in ${f(o.shipMs)} ms; records lost ${o.lost}, stored twice ${o.storedTwice}; ${o.duplicateAcks} replayed batches absorbed by the duplicate window.`,
);
