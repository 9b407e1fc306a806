// Runs `bin/flowlogd run` as a child process, as a user would, and reads its flows.log.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlowLogRecord } from '../aggregate/record.ts';
import { projectPath } from '../common/paths.ts';

const FLOWLOGD = projectPath('bin', 'flowlogd');

/** A flows.log line as parsed: the counters typed as the aggregator writes them, the rest loose. */
export type Rec = Record<string, unknown> &
  Pick<
    FlowLogRecord,
    | 'bytes_in'
    | 'bytes_out'
    | 'packets_in'
    | 'packets_out'
    | 'num_flows'
    | 'num_flows_started'
    | 'num_flows_completed'
    | 'start_time'
    | 'end_time'
  >;

export class Flowlogd {
  readonly dir: string;
  readonly child: ChildProcess;
  stderr = '';
  flushes = 0;
  readonly started: Promise<void>;

  /** `wrapper`: a command line to run flowlogd under (e.g. setpriv with fewer capabilities). */
  constructor(args: string[], wrapper: readonly string[] = []) {
    this.dir = mkdtempSync(join(tmpdir(), 'flowlogd-e2e-'));
    const argv = [FLOWLOGD, 'run', '--flow-logs-file-directory', this.dir, '--log-level', 'debug', ...args];
    this.child = spawn([...wrapper, ...argv][0]!, [...wrapper, ...argv].slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.started = new Promise((resolve, reject) => {
      this.child.stderr!.on('data', (c: Buffer) => {
        this.stderr += c;
        if (this.stderr.includes('"flowlogd started"')) resolve();
        this.flushes = this.stderr.split('"msg":"flushed"').length - 1;
      });
      this.child.once('exit', (code) => reject(new Error(`flowlogd exited ${code}: ${this.stderr}`)));
    });
  }

  /** SIGTERM, then the exit code (null if a signal ended it). Never waits on a dead process. */
  async stop(): Promise<number | null> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return c.exitCode;
    const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
    c.kill('SIGTERM');
    return exited;
  }

  records(): Rec[] {
    const files = readdirSync(this.dir)
      .filter((f) => f.startsWith('flows.log'))
      .sort();
    return files.flatMap((f) =>
      readFileSync(join(this.dir, f), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Rec),
    );
  }
}

export async function until(what: string, cond: () => boolean, timeoutMs = 20000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What the daemon's `flushed` debug line says about one flush (src/daemon/daemon.ts). */
export interface FlushLine {
  seq: number;
  /** The end of the interval the flush closed (the daemon's clock), ms. */
  endMs: number;
  /** The period of the timer that ran it, ms. */
  intervalMs: number;
  /** The most it was allowed to wait for the sinks, ms. */
  sinkWaitMs: number;
  records: number;
}

/**
 * The flushes logged in `stderr` after its first `after` (a log message; all when
 * omitted or not yet logged: then none), in order. Tests read the schedule from these
 * fields, never from when a line was logged: that moves with the machine's load.
 */
export function flushLines(stderr: string, after?: string): FlushLine[] {
  let from = 0;
  if (after !== undefined) {
    from = stderr.indexOf(after);
    if (from < 0) return [];
  }
  return stderr
    .slice(from)
    .split('\n')
    .slice(0, -1) // a line still arriving
    .filter((l) => l.includes('"msg":"flushed"'))
    .map((l) => JSON.parse(l) as FlushLine);
}
