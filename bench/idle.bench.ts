// Idle and steady cost of the whole daemon (issue 12): `bin/flowlogd run` as shipped, on
// a lab pod's veth, default settings (5-minute flush). Idle: no traffic at all; load: UDP
// at a fixed rate (or as fast as one sender goes: --pps 0) over some flows. For each: the
// share of one core, resident memory (settled: sampled every second over the window, which
// starts after a settle period, median), and wake-ups a second by thread (context
// switches): a daemon with nothing to do should sleep, and a timer that fires when nothing
// happened shows up here.
//
// A/B: --variant NAME=PATH (repeatable) runs each PATH/bin/flowlogd (another checkout,
// built) in the same lab, rounds interleaved with the order rotated, medians per variant.
// --node-flags NAME='FLAGS' runs this checkout's dist under node with other flags.
// --load tcp-rr: the load is request/response TCP instead, a new connection a request
// (16 in flight, `flowlogd bench lab`'s tcp-rr, conntrack on): the many-new-connections
// case, where what the daemon holds between flushes grows (RSS at the window's end too).
// Needs root. Usage: node dist/bench/idle.bench.js [--idle S] [--seconds S] [--pps N]
//   [--flows N] [--load udp|tcp-rr] [--rounds N] [--settle S] [--variant NAME=CHECKOUT]...
//   [--node-flags NAME=FLAGS]...
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCHTOOL, firstLine } from '../src/bench/native.ts';
import { cpuSeconds, memory } from '../src/bench/proc.ts';
import { projectPath } from '../src/common/paths.ts';
import { Lab } from '../src/lab/lab.ts';

const { values } = parseArgs({
  options: {
    idle: { type: 'string', default: '60' },
    seconds: { type: 'string', default: '60' },
    pps: { type: 'string', default: '10000' },
    flows: { type: 'string', default: '100' },
    load: { type: 'string', default: 'udp' },
    rounds: { type: 'string', default: '1' },
    settle: { type: 'string', default: '5' },
    variant: { type: 'string', multiple: true, default: [] },
    'node-flags': { type: 'string', multiple: true, default: [] },
    json: { type: 'boolean', default: false },
  },
});

interface Variant {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
}

const variants: Variant[] = [{ name: 'this', command: projectPath('bin', 'flowlogd'), args: [] }];
for (const v of values.variant) {
  const [name, path] = v.split('=', 2);
  variants.push({ name: name!, command: join(path!, 'bin', 'flowlogd'), args: [] });
}
for (const v of values['node-flags']) {
  // NAME=FLAGS: node's flags, and NAME=VALUE words (MALLOC_ARENA_MAX=2) as environment.
  const eq = v.indexOf('=');
  const words = v
    .slice(eq + 1)
    .split(/\s+/)
    .filter(Boolean);
  const isEnv = (w: string) => /^[A-Z_][A-Z0-9_]*=/.test(w);
  variants.push({
    name: v.slice(0, eq),
    command: process.execPath,
    args: [...words.filter((w) => !isEnv(w)), projectPath('dist', 'src', 'cli', 'main.js')],
    env: Object.fromEntries(words.filter(isEnv).map((w) => w.split('=', 2) as [string, string])),
  });
}

/** Context switches and CPU seconds of every thread, by thread id (and its name). */
function switches(pid: number): Map<string, { comm: string; n: number; cpu: number }> {
  const out = new Map<string, { comm: string; n: number; cpu: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const st = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const n = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0);
      const cpu = cpuSeconds(pid, tid) ?? 0;
      out.set(tid, { comm, n: n('voluntary_ctxt_switches') + n('nonvoluntary_ctxt_switches'), cpu });
    } catch {
      // thread gone
    }
  }
  return out;
}

interface WindowResult {
  cpuShare: number;
  rssMedianMiB: number;
  /** The window's last sample: what grows shows here. */
  rssEndMiB: number;
  anonMiB: number;
  fileMiB: number;
  /** Wake-ups a second by thread name (threads of one name summed: V8Worker ×4). */
  wakeups: Record<string, number>;
  /** Share of one core by thread name (summed as wakeups). */
  cpuByThread: Record<string, number>;
}

async function window(pid: number, seconds: number): Promise<WindowResult> {
  const c0 = cpuSeconds(pid)!;
  const s0 = switches(pid);
  const t0 = performance.now();
  const rss: number[] = [];
  const anon: number[] = [];
  const file: number[] = [];
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 1000));
    const m = memory(pid)!;
    rss.push(m.rssBytes);
    anon.push(m.rssAnonBytes);
    file.push(m.rssFileBytes);
  }
  const s = (performance.now() - t0) / 1000;
  const s1 = switches(pid);
  const wakeups: Record<string, number> = {};
  const cpuByThread: Record<string, number> = {};
  for (const [tid, { comm, n, cpu }] of s1) {
    const w = (n - (s0.get(tid)?.n ?? 0)) / s;
    if (w > 0) wakeups[comm] = (wakeups[comm] ?? 0) + w;
    const c = (cpu - (s0.get(tid)?.cpu ?? 0)) / s;
    if (c > 0) cpuByThread[comm] = (cpuByThread[comm] ?? 0) + c;
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]! / 2 ** 20;
  return {
    cpuShare: (cpuSeconds(pid)! - c0) / s,
    rssMedianMiB: med(rss),
    rssEndMiB: rss.at(-1)! / 2 ** 20,
    anonMiB: med(anon),
    fileMiB: med(file),
    wakeups,
    cpuByThread,
  };
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const lab = new Lab();
const dir = mkdtempSync(join(tmpdir(), 'flowlogd-idle-'));
let daemon: ChildProcess | undefined;
const results = new Map<string, { idle: WindowResult[]; load: WindowResult[] }>(
  variants.map((v) => [v.name, { idle: [], load: [] }]),
);
const tcpRr = values.load === 'tcp-rr';
if (!tcpRr && values.load !== 'udp')
  throw new Error(`--load: ${JSON.stringify(values.load)} is not udp or tcp-rr`);
try {
  const client = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-c` });
  const server = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-s` });
  const sink = lab.spawn(server, BENCHTOOL, ['sink', '5001']);
  await firstLine(sink, 'benchtool sink');
  if (tcpRr) {
    // As `flowlogd bench lab` sets up tcp-rr (src/bench/lab.ts).
    lab.enableConntrack();
    lab.exec(client, 'sysctl', ['-qw', 'net.ipv4.tcp_tw_reuse=1']);
    lab.exec(client, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
    await firstLine(lab.spawn(server, BENCHTOOL, ['serve', '-c', '1', '5002']), 'benchtool serve');
  }
  const rounds = Number(values.rounds);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + round) % variants.length]!;
      process.stderr.write(`round ${round + 1}/${rounds}: ${v.name}\n`);
      rmSync(dir, { recursive: true, force: true });
      daemon = spawn(
        v.command,
        [...v.args, 'run', '--interfaces', client.hostIf, '--flow-logs-file-directory', dir],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...v.env } },
      );
      let log = '';
      await new Promise<void>((resolve, reject) => {
        daemon!.stderr!.on('data', (c) => {
          log += c;
          if (log.includes('"flowlogd started"')) resolve();
        });
        daemon!.once('exit', (code) => reject(new Error(`flowlogd exited ${code}: ${log}`)));
      });
      // Start-up settles (conntrack dump, the first GCs): the figures are the settled daemon's.
      await new Promise((r) => setTimeout(r, Number(values.settle) * 1000));
      const idle = await window(daemon.pid!, Number(values.idle));
      const genSeconds = String(Number(values.seconds) + Number(values.settle) + 5);
      const gen = lab.spawn(
        client,
        BENCHTOOL,
        tcpRr
          ? ['tcprr', '-c', '0', server.ipv4, '5002', '16', genSeconds]
          : ['blast', '-c', '0', server.ipv4, '5001', values.flows, '18', genSeconds, values.pps],
      );
      await new Promise((r) => setTimeout(r, Number(values.settle) * 1000));
      const load = await window(daemon.pid!, Number(values.seconds));
      gen.kill();
      results.get(v.name)!.idle.push(idle);
      results.get(v.name)!.load.push(load);
      const d = daemon;
      d.kill('SIGTERM');
      await new Promise((r) => (d.exitCode !== null ? r(null) : d.once('exit', r)));
      daemon = undefined;
    }
  }
  const pps = values.pps === '0' ? 'as fast as it goes' : `${values.pps} packets/s`;
  const row = (name: string, state: string, ws: WindowResult[]) => {
    const names = [...new Set(ws.flatMap((w) => Object.keys(w.wakeups)))];
    const wake = names
      .map((n) => [n, median(ws.map((w) => w.wakeups[n] ?? 0))] as const)
      .sort((a, b) => b[1] - a[1])
      .map(([n, x]) => `${n} ${x.toFixed(1)}`)
      .join(', ');
    const threads = [...new Set(ws.flatMap((w) => Object.keys(w.cpuByThread)))];
    const cpu = threads
      .map((n) => [n, median(ws.map((w) => w.cpuByThread[n] ?? 0))] as const)
      .filter(([, x]) => x >= 0.0005)
      .sort((a, b) => b[1] - a[1])
      .map(([n, x]) => `${n} ${(x * 100).toFixed(1)}%`)
      .join(', ');
    const m = (f: (w: WindowResult) => number) => median(ws.map(f));
    return `| ${name} | ${state} | ${(m((w) => w.cpuShare) * 100).toFixed(2)}% | ${m((w) => w.rssMedianMiB).toFixed(1)} (${m((w) => w.anonMiB).toFixed(1)} + ${m((w) => w.fileMiB).toFixed(1)}) | ${ws.map((w) => w.rssMedianMiB.toFixed(1)).join(', ')} | ${ws.map((w) => w.rssEndMiB.toFixed(1)).join(', ')} | ${wake} | ${cpu || '–'} |`;
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(Object.fromEntries(results), null, 1)}\n`);
  } else {
    const lines = [
      `## Daemon idle and under load (${new Date().toISOString().slice(0, 16)} UTC, ${rounds} round(s), medians)`,
      '',
      `Command: \`node dist/bench/idle.bench.js ${process.argv.slice(2).join(' ')}\``,
      '',
      '| variant | state | CPU (share of one core) | RSS MiB, median (anon + file) | RSS by round | RSS at the end, by round | wake-ups/s by thread | CPU by thread |',
      '|---|---|---|---|---|---|---|---|',
    ];
    for (const v of variants) {
      const r = results.get(v.name)!;
      lines.push(row(v.name, `idle, ${values.idle} s`, r.idle));
      const load = tcpRr
        ? 'request/response TCP, a new connection a request'
        : `${pps} over ${values.flows} flows`;
      lines.push(row(v.name, `${load}, ${values.seconds} s`, r.load));
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  }
} finally {
  daemon?.kill('SIGTERM');
  if (daemon) await new Promise((r) => (daemon!.exitCode !== null ? r(null) : daemon!.once('exit', r)));
  await lab.destroy();
  rmSync(dir, { recursive: true, force: true });
}
