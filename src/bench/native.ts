// The bench's native helper (bpf/tools/benchtool.c, built by `make -C bpf` and shipped
// in the image): kernel BPF run-time stats and program listing, the empty TC program
// that measures the hook's own cost, and the traffic generators.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { projectPath } from '../common/paths.ts';

export const BENCHTOOL = projectPath('bpf', '.output', 'benchtool');

export function benchtoolPath(): string {
  if (!existsSync(BENCHTOOL))
    throw new Error(`bench: ${BENCHTOOL} is missing: build it with \`make -C bpf\` (scripts/setup.sh does)`);
  return BENCHTOOL;
}

export interface ProgramStat {
  id: number;
  type: number;
  name: string;
  run_time_ns: number;
  run_cnt: number;
}

/** Resolves with the first line a child prints; rejects if it exits first. */
export function firstLine(child: ChildProcess, what: string): Promise<{ line: string; lines: Interface }> {
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (c) => {
      err += c;
    });
    const lines = createInterface({ input: child.stdout! });
    const onExit = (code: number | null) => reject(new Error(`${what} exited ${code}: ${err.trim()}`));
    child.once('exit', onExit);
    lines.once('line', (line) => {
      child.off('exit', onExit);
      resolve({ line, lines });
    });
  });
}

/**
 * Kernel BPF run-time stats, on while this object lives (a BPF_ENABLE_STATS fd held by
 * the helper): closing it, or this process dying, puts the kernel's setting back as it
 * was, whatever else enabled it meanwhile.
 */
export class BpfStats {
  readonly #child: ChildProcess;
  readonly #lines: Interface;
  readonly #pending: ((progs: ProgramStat[]) => void)[] = [];

  private constructor(child: ChildProcess, lines: Interface) {
    this.#child = child;
    this.#lines = lines;
    lines.on('line', (l) => this.#pending.shift()?.((JSON.parse(l) as { progs: ProgramStat[] }).progs));
  }

  static async enable(): Promise<BpfStats> {
    const child = spawn(benchtoolPath(), ['stats'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const { line, lines } = await firstLine(child, 'benchtool stats');
    if (line !== 'ready') throw new Error(`benchtool stats: ${line}`);
    return new BpfStats(child, lines);
  }

  /** Every loaded program's cumulative run time and run count. */
  snapshot(): Promise<ProgramStat[]> {
    return new Promise((resolve, reject) => {
      if (this.#child.exitCode !== null) return reject(new Error('benchtool stats has exited'));
      this.#pending.push(resolve);
      this.#child.stdin!.write('\n');
    });
  }

  async close(): Promise<void> {
    this.#lines.close();
    const c = this.#child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.stdin!.end();
    await exited;
  }
}

/** The empty program (returns "next") attached by tcx links to ingress and egress of `ifnames`. */
export class EmptyProgram {
  readonly id: number;
  readonly #child: ChildProcess;
  private constructor(child: ChildProcess, id: number) {
    this.#child = child;
    this.id = id;
  }

  static async attach(ifnames: string[]): Promise<EmptyProgram> {
    const child = spawn(benchtoolPath(), ['empty', ...ifnames], { stdio: ['pipe', 'pipe', 'pipe'] });
    const { line } = await firstLine(child, 'benchtool empty');
    const m = /^ready (\d+)$/.exec(line);
    if (!m) throw new Error(`benchtool empty: ${line}`);
    return new EmptyProgram(child, Number(m[1]));
  }

  get pid(): number {
    return this.#child.pid!;
  }

  async detach(): Promise<void> {
    const c = this.#child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.stdin!.end();
    await exited;
  }
}

/** Run time and run count of `ids` between two snapshots, summed. */
export function statDelta(
  before: readonly ProgramStat[],
  after: readonly ProgramStat[],
  ids: readonly number[],
): { runTimeNs: number; runs: number } {
  let runTimeNs = 0;
  let runs = 0;
  for (const id of ids) {
    const a = after.find((p) => p.id === id);
    const b = before.find((p) => p.id === id);
    if (!a) continue;
    runTimeNs += a.run_time_ns - (b?.run_time_ns ?? 0);
    runs += a.run_cnt - (b?.run_cnt ?? 0);
  }
  return { runTimeNs, runs };
}
