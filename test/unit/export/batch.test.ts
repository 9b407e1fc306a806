import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inBatches, LineBatch, LineBatchBuilder } from '../../../src/export/batch.ts';
import { BatchQueue } from '../../../src/export/sink.ts';

test('a builder encodes lines as UTF-8 with newlines and line ends, and starts over after finish()', () => {
  const b = new LineBatchBuilder(1 << 20, 10);
  b.add('{"a":1}');
  b.add('{"name":"café-ü"}'); // é and ü are two bytes each in UTF-8
  b.add('{"x":"☃"}'); // three bytes
  const batch = b.finish();
  assert.equal(batch.count, 3);
  assert.deepEqual([...batch.ends], [8, 8 + 20, 8 + 20 + 12]);
  assert.equal(batch.buf.toString('utf8'), '{"a":1}\n{"name":"café-ü"}\n{"x":"☃"}\n');
  assert.deepEqual(batch.lines(), ['{"a":1}', '{"name":"café-ü"}', '{"x":"☃"}']);
  assert.equal(batch.bytes, 40);
  assert.equal(batch.buf.length, 40, 'exactly its size, no slack kept in the queue');
  assert.equal(b.count, 0);
  b.add('{"b":2}');
  assert.deepEqual(b.finish().lines(), ['{"b":2}']);
});

test('a builder is full at maxLines, or once maxBytes are used; one line always fits', () => {
  const byLines = new LineBatchBuilder(1 << 20, 2);
  byLines.add('1');
  assert.equal(byLines.full, false);
  byLines.add('2');
  assert.equal(byLines.full, true);

  const byBytes = new LineBatchBuilder(10, 100);
  const long = 'x'.repeat(200_000); // far beyond maxBytes and the initial buffer: it grows
  byBytes.add(long);
  assert.equal(byBytes.full, true);
  const batch = byBytes.finish();
  assert.equal(batch.count, 1);
  assert.equal(batch.line(0), long);
  byBytes.add('abcd'); // 5 bytes
  assert.equal(byBytes.full, false);
  byBytes.add('efgh'); // 10 bytes
  assert.equal(byBytes.full, true);
});

test('a queue drops as few of the oldest lines as bring it within its bound, across batches', () => {
  const q = new BatchQueue(30);
  // 8 bytes a line with its newline.
  assert.equal(q.push(LineBatch.fromLines(['{"a":1}', '{"b":2}'])), 0);
  assert.equal(q.push(LineBatch.fromLines(['{"c":3}'])), 0);
  assert.deepEqual([q.length, q.bytes], [3, 24]);
  // +16 bytes = 40: the two oldest lines (16 bytes) must go, from the first batch.
  assert.equal(q.push(LineBatch.fromLines(['{"d":4}', '{"e":5}'])), 2);
  assert.deepEqual([q.length, q.bytes], [3, 24]);
  const run = q.headRun(1 << 20)!;
  assert.equal(run.batch.buf.subarray(run.start, run.end).toString(), '{"c":3}\n');
  assert.equal(run.lines, 1, 'a run never crosses into the next batch');
  q.drop(1);
  assert.equal(q.peekSize(), 8);
  const rest = q.headRun(1 << 20)!;
  assert.equal(rest.batch.buf.subarray(rest.start, rest.end).toString(), '{"d":4}\n{"e":5}\n');
  // A batch bigger than the whole bound keeps only its newest lines that fit.
  const big = Array.from({ length: 6 }, (_, i) => `{"n":${i}}`);
  assert.equal(q.push(LineBatch.fromLines(big)), 2 + 3);
  assert.deepEqual(
    q
      .headRun(1 << 20)!
      .batch.lines()
      .slice(3),
    ['{"n":3}', '{"n":4}', '{"n":5}'],
  );
  assert.deepEqual([q.length, q.bytes], [3, 24]);
  // A single line longer than the bound is dropped itself.
  assert.equal(q.push(LineBatch.fromLines(['x'.repeat(40)])), 3 + 1);
  assert.deepEqual([q.length, q.bytes], [0, 0]);
  assert.equal(q.headRun(100), null);
});

test('a queue run stops before the line that would pass the byte limit, but takes one line always', () => {
  const q = new BatchQueue(1 << 20);
  q.push(LineBatch.fromLines(['aaaa', 'bbbb', 'cccc'])); // 5 bytes each
  assert.deepEqual(pick(q.headRun(10)!), ['aaaa\nbbbb\n', 2]);
  assert.deepEqual(pick(q.headRun(9)!), ['aaaa\n', 1]);
  assert.deepEqual(pick(q.headRun(1)!), ['aaaa\n', 1]);
  q.drop(2);
  assert.deepEqual(pick(q.headRun(100)!), ['cccc\n', 1]);
  assert.equal(q.clear(), 1);
  assert.equal(q.length, 0);
});

function pick(r: { batch: LineBatch; start: number; end: number; lines: number }): [string, number] {
  return [r.batch.buf.subarray(r.start, r.end).toString(), r.lines];
}

test('a full batch keeps its bytes when the builder goes on (its buffer was handed over, not reused)', () => {
  const b = new LineBatchBuilder(256 << 10, 100_000);
  const a = 'a'.repeat(1023); // 1 KiB with the newline
  while (!b.full) b.add(a);
  const first = b.finish();
  assert.equal(first.count, 256);
  assert.equal(first.buf.length, 256 << 10);
  while (!b.full) b.add('b'.repeat(1023));
  const second = b.finish();
  assert.ok(
    first.lines().every((l) => l === a),
    'the first batch is untouched',
  );
  assert.equal(second.line(255), 'b'.repeat(1023));
});

test('a line that would cross maxBytes starts the next batch; a line longer than maxBytes goes alone', () => {
  const b = new LineBatchBuilder(20, 100);
  const seen: string[][] = [];
  // 8, 8, then 8 more would be 24 > 20: 'cccccc' is carried; then 30 bytes alone; then 'd'.
  for (const l of ['aaaaaaa', 'bbbbbbb', 'ccccccc', 'x'.repeat(29), 'd']) {
    b.add(l);
    if (b.full) seen.push(b.finish().lines());
  }
  seen.push(b.finish().lines());
  assert.deepEqual(seen, [['aaaaaaa', 'bbbbbbb'], ['ccccccc'], ['x'.repeat(29)], ['d']]);
  // Lines added past full() without finish() are cut at the byte bound too.
  const c = new LineBatchBuilder(10, 100);
  for (const l of ['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee']) c.add(l); // 5 bytes each
  const got: string[][] = [];
  while (c.count > 0) got.push(c.finish().lines());
  assert.deepEqual(got, [['aaaa', 'bbbb'], ['cccc', 'dddd'], ['eeee']]);
  // A full batch handed over whole (>= 3/4 of the buffer) leaves the carried line intact.
  const d = new LineBatchBuilder(256 << 10, 100_000);
  const a = 'a'.repeat(1000);
  let n = 0;
  while (!d.full) d.add(`${String(n++).padStart(5, '0')}${a}`);
  const first = d.finish();
  assert.equal(first.count, 260); // 1,006 bytes a line: 260 fit 262,144, the 261st is carried
  assert.ok(first.bytes <= 256 << 10);
  assert.equal(d.count, 1);
  assert.equal(d.finish().line(0), `00260${a}`);
});

test('inBatches yields each batch as it fills and the rest at the end', () => {
  const lines = Array.from({ length: 7 }, (_, i) => `{"n":${i}}`);
  const batches = [...inBatches(lines, new LineBatchBuilder(1 << 20, 3))];
  assert.deepEqual(
    batches.map((b) => b.lines()),
    [lines.slice(0, 3), lines.slice(3, 6), lines.slice(6)],
  );
  assert.deepEqual([...inBatches([], new LineBatchBuilder())], []);
});

test('a recycled full batch gives its buffer to the next full batch; a copied small one is not taken', () => {
  const b = new LineBatchBuilder(256 << 10, 100_000);
  const fill = (c: string) => {
    while (!b.full) b.add(c.repeat(1023));
    return b.finish(); // ≥ 3/4 of the buffer: the batch takes the buffer over
  };
  const full = fill('x');
  const firstBuffer = full.buf.buffer;
  b.recycle(full);
  // The builder already works in a new buffer; the spare replaces it at the next hand-over.
  assert.notEqual(fill('y').buf.buffer, firstBuffer);
  const third = fill('z');
  assert.equal(third.buf.buffer, firstBuffer);
  assert.equal(third.line(0), 'z'.repeat(1023));
  b.add('s');
  const copy = b.finish(); // a copy of its exact size, not the builder's buffer
  assert.equal(copy.buf.length, 2);
  b.recycle(copy);
  assert.notEqual(fill('t').buf.buffer, copy.buf.buffer);
  assert.notEqual(fill('u').buf.buffer, copy.buf.buffer);
});
