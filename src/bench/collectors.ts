// What runs on the watched interface in each variant of `bench lab`: nothing, the empty
// program (the hook's own cost), flowlogd as shipped (`bin/flowlogd run`), or a classic
// host collector (pmacctd, softflowd) capturing on the same interface.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectPath } from '../common/paths.ts';
import { benchtoolPath, EmptyProgram, firstLine } from './native.ts';
import { cpuSeconds, memory, programsOf } from './proc.ts';

export const BASE_VARIANTS = ['none', 'empty', 'flowlogd'] as const;
export const PEER_VARIANTS = ['pmacctd', 'softflowd'] as const;
/** A standard variant, or the name of a BPF object given with --object (development A/B). */
export type Variant = string;

/** A collector running for one measured window. */
export interface Running {
  /** BPF programs whose run time is its cost (empty program, flowlogd's TC programs). */
  programIds: number[];
  /** The process tree whose CPU and memory are the collector's; null: none. */
  pid: number | null;
  /** flowlogd: its kernel counters (cacheHits, ctLookups, ...), from its metrics. */
  kernelCounters?: () => Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** The pid and every descendant of it. */
function tree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

/** CPU seconds of a process and its descendants (pmacctd forks its plugins). */
export function treeCpuSeconds(pid: number): number {
  return tree(pid).reduce((a, p) => a + (cpuSeconds(p) ?? 0), 0);
}

/** Resident bytes of a process and its descendants. */
export function treeRssBytes(pid: number): number {
  return tree(pid).reduce((a, p) => a + (memory(p)?.rssBytes ?? 0), 0);
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) =>
    child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()),
  );
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const done = exited(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(timer);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startFlowlogd(ifname: string): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(
    projectPath('bin', 'flowlogd'),
    ['run', '--interfaces', ifname, '--flow-logs-file-directory', dir, '--metrics-port', String(port)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (c: Buffer) => {
      log += c;
      if (log.includes('"flowlogd started"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`flowlogd run exited ${code}: ${log.slice(-2000)}`)));
  });
  child.stderr!.removeAllListeners('data');
  child.stderr!.resume();
  return {
    programIds: [...programsOf(child.pid!)],
    pid: child.pid!,
    async kernelCounters() {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/^flowlogd_datapath_kernel_events_total\{counter="(\w+)"\} (\S+)$/gm))
        out[m[1]!] = Number(m[2]);
      return out;
    },
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startPeer(variant: 'pmacctd' | 'softflowd', ifname: string): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), `flowlogd-bench-${variant}-`));
  const args =
    variant === 'pmacctd'
      ? // In-memory table keyed by the 5-tuple, as flowlogd's is; no export.
        [
          '-i',
          ifname,
          '-c',
          'src_host,dst_host,src_port,dst_port,proto',
          '-P',
          'memory',
          '-p',
          join(dir, 'pipe'),
        ]
      : // NetFlow v9 to a local port nobody listens on: the export costs a send, no more.
        ['-d', '-i', ifname, '-v', '9', '-n', '127.0.0.1:9', '-p', join(dir, 'pid'), '-c', join(dir, 'ctl')];
  const child = spawn(variant, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => {
    log += c;
  });
  const failed = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`${variant} exited ${code}: ${log.slice(-2000)}`))),
  );
  // Neither says when its capture is open: give libpcap a second.
  await Promise.race([sleep(1000), failed]);
  failed.catch(() => {});
  return {
    programIds: [],
    pid: child.pid!,
    async stop() {
      child.removeAllListeners('exit');
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Is a peer collector installed (Debian's pmacct and softflowd packages)? */
export function peerInstalled(variant: 'pmacctd' | 'softflowd'): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${variant}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** flowlogd's programs from a BPF object file, attached without the daemon (no drain). */
async function startObject(path: string, ifname: string): Promise<Running> {
  const child = spawn(benchtoolPath(), ['attach', path, ifname], { stdio: ['pipe', 'pipe', 'pipe'] });
  const { line, lines } = await firstLine(child, `benchtool attach ${path}`);
  const m = /^ready (\d+) (\d+)$/.exec(line);
  if (!m) throw new Error(`benchtool attach: ${line}`);
  return {
    programIds: [Number(m[1]), Number(m[2])],
    pid: null,
    // One JSON line of the object's counters (cacheHits, ctLookups, ...) per line asked.
    kernelCounters: () =>
      new Promise((resolve) => {
        lines.once('line', (l) => resolve(JSON.parse(l) as Record<string, number>));
        child.stdin!.write('\n');
      }),
    async stop() {
      lines.close();
      const done = exited(child);
      child.stdin!.end();
      await done;
    },
  };
}

export async function startVariant(
  variant: Variant,
  ifname: string,
  objects: Record<string, string> = {},
): Promise<Running> {
  if (objects[variant] !== undefined) return startObject(objects[variant], ifname);
  switch (variant) {
    case 'none':
      return { programIds: [], pid: null, async stop() {} };
    case 'empty': {
      const p = await EmptyProgram.attach([ifname]);
      return { programIds: [p.id], pid: null, stop: () => p.detach() };
    }
    case 'flowlogd':
      return startFlowlogd(ifname);
    case 'pmacctd':
    case 'softflowd':
      return startPeer(variant, ifname);
  }
  throw new Error(`bench: no variant ${JSON.stringify(variant)}`);
}
