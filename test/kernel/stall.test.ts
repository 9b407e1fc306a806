// A stalled stdout (issue 14 item 6): `flowlogd run --stdout` into a pipe nobody reads,
// with a lab pod keeping 2,000 UDP connections active so each 1 s flush has ~2 MB of
// kind-0 lines for it. The flushes keep their interval (a stalled sink gets at most half
// an interval, once; after that its bounded queue takes the lines at once), and SIGTERM
// ends the process within a bounded time, the lines the pipe still held counted as
// dropped. It used to stretch 2 s intervals to 5 s and live on until the reader died.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { projectPath } from '../../src/common/paths.ts';
import { cli } from '../../src/lab/args.ts';
import { flushLines, until } from '../../src/lab/flowlogd.ts';
import type { Lab, Pod } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

describe('stalled stdout', { skip: kernelSkipReason() }, () => {
  let lab: Lab;
  let client: Pod;
  let server: Pod;
  suiteLab((l) => {
    lab = l;
    client = lab.addPod({ namespace: 's', name: `stall-c-${lab.prefix}` });
    server = lab.addPod({ namespace: 's', name: `stall-s-${lab.prefix}` });
  });

  test('flushes keep their interval and SIGTERM exits with the pipe still full', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowlogd-stall-'));
    // stdout is a pipe this test never reads.
    const child = spawn(
      projectPath('bin', 'flowlogd'),
      cli('run', {
        stdout: true,
        flowLogsFileDirectory: dir,
        interfaces: `${client.hostIf},${server.hostIf}`,
        flowLogsFlushInterval: '1s',
        flowLogsFileAggregationKindForAllowed: 0,
        conntrack: 'false',
        dropTracing: 'false',
        logLevel: 'debug',
      }),
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const stall = 'a sink is not keeping up';
    const { child: spray } = await lab.traffic(
      client,
      cli('spray', { host: server.ipv4, port: 20000, flows: 2000, every: 0.5 }),
      { keep: true },
    );
    try {
      await until('started', () => stderr.includes('"flowlogd started"'), 30_000);
      // The pipe (64 KiB) is full within the first flush; from then on the sink stalls.
      await until('a stalled sink', () => stderr.includes(stall), 30_000);
      // From the stall on, 1 s flushes: the first gave the full pipe its half interval,
      // every later one gives it nothing (its bounded queue takes the lines at once), and
      // none is skipped for a flush still waiting. (Before: 5 s per flush waiting on the
      // stalled sink, the flushes in between skipped.) Read from the flushes' own fields.
      await until('six flushes after the stall', () => flushLines(stderr, stall).length >= 6, 60_000);
      const after = flushLines(stderr, stall);
      assert.deepEqual(
        after.map((f) => [f.intervalMs, f.sinkWaitMs]),
        after.map((_, i) => [1000, i === 0 ? 500 : 0]),
      );
      assert.doesNotMatch(stderr.slice(stderr.indexOf(stall)), /flush skipped/);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise<'alive'>((r) => setTimeout(() => r('alive'), 30_000).unref()),
      ]);
      assert.equal(code, 0, `exit after SIGTERM (${Date.now() - t0} ms): ${stderr.slice(-1500)}`);
      const stopped = stderr.split('\n').find((l) => l.includes('final flush written; stopped'));
      assert.ok(stopped, 'the daemon logged its stop');
      const stdout = (JSON.parse(stopped) as { sinks: Record<string, { droppedLines: number }> }).sinks
        .stdout!;
      assert.ok(stdout.droppedLines > 0, 'what the stalled pipe held is counted as dropped');
    } finally {
      spray.stdin?.end();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child.stdout!.destroy();
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
