// Idle and steady cost of the whole daemon (issue 12): `bin/flowlogd run` as shipped, on
// a lab pod's veth, default settings (5-minute flush). Idle: no traffic at all; steady:
// UDP at a fixed rate over some flows. For each: the share of one core, resident memory,
// and wake-ups a second by thread (context switches): a daemon with nothing to do should
// sleep, and a timer that fires when nothing happened shows up here.
// Needs root. Usage: node bench/idle.bench.ts [--idle S] [--seconds S] [--pps N] [--flows N]
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
  },
});

/** Context switches of every thread, by thread name. */
function switches(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const st = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const n = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0);
      out.set(comm, (out.get(comm) ?? 0) + n('voluntary_ctxt_switches') + n('nonvoluntary_ctxt_switches'));
    } catch {
      // thread gone
    }
  }
  return out;
}

async function window(pid: number, seconds: number) {
  const c0 = cpuSeconds(pid)!;
  const s0 = switches(pid);
  const t0 = performance.now();
  const rss: number[] = [];
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 1000));
    rss.push(memory(pid)!.rssBytes);
  }
  const s = (performance.now() - t0) / 1000;
  const s1 = switches(pid);
  const wake = [...s1]
    .map(([name, n]) => [name, (n - (s0.get(name) ?? 0)) / s] as const)
    .filter(([, w]) => w > 0);
  rss.sort((a, b) => a - b);
  const m = memory(pid)!;
  return {
    cpuShare: (cpuSeconds(pid)! - c0) / s,
    rssMedianMiB: rss[rss.length >> 1]! / 2 ** 20,
    anonMiB: m.rssAnonBytes / 2 ** 20,
    fileMiB: m.rssFileBytes / 2 ** 20,
    wakeups: wake.sort((a, b) => b[1] - a[1]),
  };
}

const lab = new Lab();
const dir = mkdtempSync(join(tmpdir(), 'flowlogd-idle-'));
let daemon: ChildProcess | undefined;
try {
  const client = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-c` });
  const server = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-s` });
  const sink = lab.spawn(server, BENCHTOOL, ['sink', '5001']);
  await firstLine(sink, 'benchtool sink');
  daemon = spawn(
    projectPath('bin', 'flowlogd'),
    ['run', '--interfaces', client.hostIf, '--flow-logs-file-directory', dir],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  await new Promise<void>((resolve, reject) => {
    daemon!.stderr!.on('data', (c) => {
      log += c;
      if (log.includes('"flowlogd started"')) resolve();
    });
    daemon!.once('exit', (code) => reject(new Error(`flowlogd exited ${code}: ${log}`)));
  });
  await new Promise((r) => setTimeout(r, 5000)); // start-up settles (conntrack dump, first GC)
  const idle = await window(daemon.pid!, Number(values.idle));
  const gen = lab.spawn(client, BENCHTOOL, [
    'blast',
    '-c',
    '0',
    server.ipv4,
    '5001',
    values.flows,
    '18',
    String(Number(values.seconds) + 10),
    values.pps,
  ]);
  await new Promise((r) => setTimeout(r, 5000));
  const steady = await window(daemon.pid!, Number(values.seconds));
  gen.kill();
  const row = (name: string, w: Awaited<ReturnType<typeof window>>) =>
    `| ${name} | ${(w.cpuShare * 100).toFixed(2)}% | ${w.rssMedianMiB.toFixed(1)} (${w.anonMiB.toFixed(1)} + ${w.fileMiB.toFixed(1)}) | ${w.wakeups.map(([n, x]) => `${n} ${x.toFixed(1)}`).join(', ')} |`;
  process.stdout.write(
    [
      `## Daemon idle and steady (${new Date().toISOString().slice(0, 16)} UTC)`,
      '',
      `Command: \`npm run bench -- idle --idle ${values.idle} --seconds ${values.seconds} --pps ${values.pps} --flows ${values.flows}\``,
      '',
      '| state | CPU (share of one core) | RSS MiB, median (anon + file) | wake-ups/s by thread |',
      '|---|---|---|---|',
      row(`idle, ${values.idle} s`, idle),
      row(`${values.pps} packets/s over ${values.flows} flows, ${values.seconds} s`, steady),
      '',
    ].join('\n'),
  );
} finally {
  daemon?.kill('SIGTERM');
  if (daemon) await new Promise((r) => (daemon!.exitCode !== null ? r(null) : daemon!.once('exit', r)));
  await lab.destroy();
  rmSync(dir, { recursive: true, force: true });
}
