import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import {
  LINE_BATCH_BYTES,
  LINE_BATCH_LINES,
  LineBatch,
  LineBatchBuilder,
} from '../../../src/export/batch.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import {
  backoffMs,
  fatal,
  ok,
  parseRetryAfter,
  Retrier,
  retryable,
  type SendResult,
  type ShipBatch,
  type Transport,
} from '../../../src/export/transport.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-net-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const lines = (n: number, from = 0) =>
  LineBatch.fromLines(Array.from({ length: n }, (_, i) => JSON.stringify({ n: from + i })));

/** Answers each send with the next scripted result (then ok), recording every batch. */
class FakeTransport implements Transport {
  readonly sent: ShipBatch[] = [];
  readonly script: SendResult[];
  constructor(script: SendResult[] = []) {
    this.script = script;
  }
  async send(b: ShipBatch): Promise<SendResult> {
    this.sent.push(b);
    return this.script.shift() ?? ok;
  }
  async close(): Promise<void> {}
  /** Record numbers of the batches acknowledged (the last send of each seq), in send order. */
  numbers(): number[] {
    return this.sent.flatMap((b) =>
      b.data
        .toString()
        .split('\n')
        .slice(0, -1)
        .map((l) => (JSON.parse(l) as { n: number }).n),
    );
  }
}

const fast = { minBackoffMs: 1, maxBackoffMs: 4, timeoutMs: 1000 };

test('backoff doubles from the minimum, is capped, and jitters within ±jitter', () => {
  const o = { timeoutMs: 1, minBackoffMs: 100, maxBackoffMs: 1000, jitter: 0.2 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoffMs(a, o, () => 0.5)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.equal(
    backoffMs(2, o, () => 0),
    160,
  );
  assert.equal(
    backoffMs(2, o, () => 1),
    240,
  );
  assert.equal(parseRetryAfter('7'), 7000);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000);
  assert.equal(parseRetryAfter('soon'), undefined);
});

test('the retry loop retries retryable results, honours Retry-After, stops at ok or fatal', async () => {
  const r = new Retrier({ minBackoffMs: 1, maxBackoffMs: 50, timeoutMs: 1000 });
  const seen: [string, number, number][] = [];
  const script = [retryable('ECONNREFUSED'), retryable('http 503', 30), ok];
  const res = await r.run(async () => script.shift()!, { onRetry: (why, n, d) => seen.push([why, n, d]) });
  assert.equal(res.status, 'ok');
  assert.deepEqual(
    seen.map(([why, n]) => [why, n]),
    [
      ['ECONNREFUSED', 1],
      ['http 503', 2],
    ],
  );
  assert.equal(seen[1]![2], 30);
  assert.equal((await r.run(async () => fatal('http 400'))).status, 'fatal');
});

test('an attempt that never settles times out as retryable', async () => {
  const r = new Retrier({ timeoutMs: 50, minBackoffMs: 1, maxBackoffMs: 1 });
  let calls = 0;
  const res = await r.run(() => (++calls === 1 ? new Promise<SendResult>(() => {}) : Promise.resolve(ok)), {
    onRetry: (why) => assert.equal(why, 'timeout'),
  });
  assert.equal(res.status, 'ok');
  assert.equal(calls, 2);
});

test('lines are cut into numbered batches by lines and bytes, and all arrive in order', async () => {
  const t = new FakeTransport();
  const spool = await Spool.open({ directory: dir });
  const sink = new NetworkSink({
    name: 'fake',
    transport: t,
    spool,
    node: 'n1',
    maxBatchLines: 7,
    window: 1,
  });
  sink.level = 2;
  sink.write(lines(20));
  sink.write(lines(5, 20));
  await sink.flush();
  await sink.delivered();
  assert.deepEqual(
    t.sent.map((b) => [b.seq, b.count, b.level, b.node]),
    [
      [0, 7, 2, 'n1'],
      [1, 7, 2, 'n1'],
      [2, 6, 2, 'n1'],
      [3, 5, 2, 'n1'],
    ],
  );
  assert.deepEqual(
    t.numbers(),
    Array.from({ length: 25 }, (_, i) => i),
  );
  const s = sink.shipStats();
  assert.equal(s.ackedLines, 25);
  assert.equal(s.ackedBatches, 4);
  assert.equal(sink.stats().queuedLines, 0);
  assert.ok(s.lastSuccessMs > 0);
  await sink.close();
});

test('byte bound: a batch never exceeds maxBatchBytes unless one line does', async () => {
  const t = new FakeTransport();
  const spool = await Spool.open({ directory: null });
  const sink = new NetworkSink({ name: 'fake', transport: t, spool, node: 'n1', maxBatchBytes: 30 });
  sink.write(lines(6)); // {"n":0}\n is 8 bytes: 3 lines (24 bytes) per batch
  await sink.delivered();
  assert.deepEqual(
    t.sent.map((b) => b.count),
    [3, 3],
  );
  await sink.close();
});

test("by default the daemon's full line batch of ~1 KB lines goes out as one network batch, not a batch and a tail", async () => {
  const t = new FakeTransport();
  const spool = await Spool.open({ directory: null });
  const sink = new NetworkSink({ name: 'fake', transport: t, spool, node: 'n1' });
  const b = new LineBatchBuilder(LINE_BATCH_BYTES, LINE_BATCH_LINES);
  const pad = 'x'.repeat(1000);
  let n = 0;
  while (!b.full) b.add(JSON.stringify({ n: n++, pad }));
  const full = b.finish();
  assert.equal(full.count, 1029); // ~1,018 bytes a line: more than the old 1,000-record bound
  sink.write(full);
  await sink.delivered();
  assert.deepEqual(
    t.sent.map((x) => x.count),
    [1029],
  );
  await sink.close();
});

test('failures are retried and lose nothing; fatal and rejected records are counted as dropped', async () => {
  const t = new FakeTransport([
    retryable('ECONNREFUSED'),
    retryable('ECONNREFUSED'),
    ok,
    fatal('http 400'),
    { status: 'ok', rejected: 2, reason: 'bad' },
  ]);
  const spool = await Spool.open({ directory: dir });
  const sink = new NetworkSink({
    name: 'fake',
    transport: t,
    spool,
    node: 'n',
    maxBatchLines: 5,
    window: 1,
    retry: fast,
  });
  sink.write(lines(15));
  await sink.flush();
  for (let i = 0; i < 50 && sink.stats().queuedLines > 0; i++) await new Promise((r) => setTimeout(r, 10));
  const s = sink.shipStats();
  assert.equal(s.retries, 2);
  assert.deepEqual(s.dropped, { fatal: 5, rejected: 2 });
  assert.equal(s.ackedLines, 8); // batch 0 (5 lines), and 3 of batch 2
  assert.equal(sink.stats().droppedLines, 7);
  assert.deepEqual(
    t.sent.map((b) => b.seq),
    [0, 0, 0, 1, 2],
  );
  await sink.close();
});

test('close leaves the unacknowledged backlog spooled; the next run replays it', async () => {
  const down = new FakeTransport(Array.from({ length: 1000 }, () => retryable('ECONNREFUSED')));
  const sink = new NetworkSink({
    name: 'fake',
    transport: down,
    spool: await Spool.open({ directory: dir }),
    node: 'n',
    maxBatchLines: 10,
    retry: fast,
    closeTimeoutMs: 50,
  });
  sink.write(lines(30));
  await sink.flush();
  await sink.close();
  const up = new FakeTransport();
  const again = new NetworkSink({
    name: 'fake',
    transport: up,
    spool: await Spool.open({ directory: dir }),
    node: 'n',
  });
  await new Promise((r) => setTimeout(r, 0));
  await again.delivered();
  assert.deepEqual(
    up.sent.map((b) => b.seq),
    [0, 1, 2],
  );
  assert.deepEqual(
    up.numbers(),
    Array.from({ length: 30 }, (_, i) => i),
  );
  assert.equal(up.sent[0]!.bootId, down.sent[0]!.bootId);
  await again.close();
});
