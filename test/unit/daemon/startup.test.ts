// `flowlogd run` start-up faults (issue 14 item 1), with the real binary in a child
// process: a flows.log directory that cannot be made fails the start at once with the
// setting and the errno (it used to spin a core forever under /proc, and to run on
// writing nothing for ENOTDIR/EROFS), and SIGTERM is acted on while the start is under
// way (it used to be stored until the start finished). None of these get as far as the
// datapath, so no root is needed except to mount the read-only disk.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { projectPath } from '../../../src/common/paths.ts';
import { flushLines, until } from '../../../src/lab/flowlogd.ts';

const FLOWLOGD = projectPath('bin', 'flowlogd');
const root = process.getuid?.() === 0;

interface Exit {
  code: number | null;
  signal: string | null;
  stderr: string;
}

/** Runs `flowlogd run ARGS`; SIGKILLs it if it has not exited within `ms` (then code is null). */
function runFlowlogd(
  args: string[],
  ms: number,
  during?: (c: ChildProcess, stderr: () => string) => void,
): Promise<Exit> {
  // Interfaces that match nothing: before the fix some of these runs went on to attach,
  // and the host's interfaces belong to other tests.
  const base = ['run', '--log-level', 'debug', '--conntrack', 'false', '--interfaces', 'nomatch-fl*'];
  const child = spawn(FLOWLOGD, [...base, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c;
  });
  during?.(child, () => stderr);
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal: signal === 'SIGKILL' ? 'SIGKILL (did not exit in time)' : signal, stderr });
    });
  });
}

function fatalLine(stderr: string): Record<string, unknown> {
  const line = stderr.split('\n').find((l) => l.includes('"level":60'));
  assert.ok(line, `a fatal log line: ${stderr.slice(-2000)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

// Each test runs its own child process with its own directories: run side by side, the
// file takes as long as its longest test (the stalled pipe) instead of their sum.
describe('flowlogd run start-up faults, each in its own child process', { concurrency: true }, () => {
  test('a flows.log directory under /proc fails the start with the setting and the errno', async () => {
    const r = await runFlowlogd(['--flow-logs-file-directory', '/proc/flowlogd-test/x'], 20_000);
    assert.deepEqual([r.code, r.signal], [1, null], r.stderr.slice(-2000));
    const f = fatalLine(r.stderr);
    assert.match(String(f.msg), /^FlowLogsFileDirectory \/proc\/flowlogd-test\/x: cannot create/);
    assert.equal(f.code, 'ENOENT');
    assert.equal(f.errno, -2);
    assert.doesNotMatch(r.stderr, /flowlogd started/);
  });

  test('a flows.log directory under a regular file (ENOTDIR) fails the start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowlogd-start-'));
    try {
      writeFileSync(join(dir, 'file'), '');
      const r = await runFlowlogd(['--flow-logs-file-directory', join(dir, 'file', 'logs')], 20_000);
      assert.deepEqual([r.code, r.signal], [1, null], r.stderr.slice(-2000));
      const f = fatalLine(r.stderr);
      assert.match(String(f.msg), /^FlowLogsFileDirectory .*\/file\/logs: cannot create/);
      assert.deepEqual([f.code, f.errno], ['ENOTDIR', -20]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a read-only flows.log directory (EROFS) fails the start', {
    skip: root ? false : 'mounting a read-only tmpfs needs root',
  }, async () => {
    const mnt = mkdtempSync(join(tmpdir(), 'flowlogd-rofs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,ro', 'flowlogd-rofs-test', mnt]);
    try {
      const r = await runFlowlogd(['--flow-logs-file-directory', join(mnt, 'logs')], 20_000);
      assert.deepEqual([r.code, r.signal], [1, null], r.stderr.slice(-2000));
      const f = fatalLine(r.stderr);
      assert.match(String(f.msg), /^FlowLogsFileDirectory .*: cannot create/);
      assert.deepEqual([f.code, f.errno], ['EROFS', -30]);
    } finally {
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  test('SIGTERM while the start waits for a metadata file to stop changing: exits at once, 143', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowlogd-start-'));
    const md = join(dir, 'md.yaml');
    writeFileSync(md, 'kind: List\nitems: []\n');
    // A writer that keeps rewriting the file in place: the start waits for it to settle.
    const touch = setInterval(() => utimesSync(md, new Date(), new Date()), 100);
    try {
      const r = await runFlowlogd(
        ['--flow-logs-file-directory', dir, '--metadata', md],
        20_000,
        (c, stderr) => {
          const poll = setInterval(() => {
            // Stop once the start is waiting for the metadata file.
            if (stderr().includes('waiting for it to settle') && !c.killed) {
              c.kill('SIGTERM');
              clearInterval(poll);
            }
          }, 50);
          c.once('exit', () => clearInterval(poll));
        },
      );
      assert.deepEqual([r.code, r.signal], [143, null], r.stderr.slice(-2000));
      assert.match(r.stderr, /stop requested during start-up/);
      assert.doesNotMatch(r.stderr, /flowlogd started/);
    } finally {
      clearInterval(touch);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('stdout into a pipe nobody reads: flushes keep their 1 s timer and stop waiting on it, SIGTERM exits, the held lines counted (issue 14 item 6)', async () => {
    const child = spawn(
      process.execPath,
      [projectPath('test', 'unit', 'daemon', 'fixtures', 'stalled-stdout.ts')],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const stall = 'a sink is not keeping up';
    try {
      await until('a stalled sink', () => stderr.includes(stall), 30_000);
      // From the stall on, 1 s flushes: the first gave the full pipe its half interval, every
      // later one gives it nothing (its bounded queue takes the lines at once), and none is
      // skipped for a flush still waiting. (Before: each waited 5 s on the stalled pipe, the
      // flushes in between skipped.) Read from the flushes' own fields, not the clock.
      await until('three flushes after the stall', () => flushLines(stderr, stall).length >= 3, 60_000);
      const after = flushLines(stderr, stall);
      assert.deepEqual(
        after.map((f) => [f.intervalMs, f.sinkWaitMs]),
        after.map((_, i) => [1000, i === 0 ? 500 : 0]),
      );
      assert.doesNotMatch(stderr.slice(stderr.indexOf(stall)), /flush skipped/);
      child.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise<'alive'>((r) => setTimeout(() => r('alive'), 20_000).unref()),
      ]);
      assert.equal(code, 0, `exit after SIGTERM: ${stderr.slice(-1500)}`);
      const stopped = stderr.split('\n').find((l) => l.includes('final flush written; stopped'));
      assert.ok(stopped, 'the daemon logged its stop');
      const s = (
        JSON.parse(stopped) as { sinks: Record<string, { droppedLines: number; writtenLines: number }> }
      ).sinks.stdout!;
      assert.ok(s.droppedLines > 0, `what the stalled pipe held is counted as dropped: ${JSON.stringify(s)}`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child.stdout!.destroy();
      await exited;
    }
  });
});
