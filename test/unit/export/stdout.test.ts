import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { FanoutSink } from '../../../src/export/sink.ts';
import { StreamSink } from '../../../src/export/stdout.ts';

/** A Writable that holds callbacks until release(): a slow consumer. */
function slowStream(highWaterMark: number) {
  const chunks: string[] = [];
  const pending: (() => void)[] = [];
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      pending.push(cb);
    },
  });
  const release = () => {
    while (pending.length > 0) pending.shift()!();
  };
  return { stream, chunks, release };
}

test('writes JSON lines; under backpressure queues boundedly and drops the oldest', async () => {
  const { stream, chunks, release } = slowStream(10);
  const sink = new StreamSink({ stream, maxQueueBytes: 30 });
  sink.write(LineBatch.fromLines(['{"a":1}', '{"b":2}'])); // first write goes to the stream, which is now over its mark
  sink.write(LineBatch.fromLines(['{"c":3}', '{"d":4}', '{"e":5}', '{"f":6}', '{"g":7}'])); // 8 bytes each, 3 fit
  let st = sink.stats();
  assert.deepEqual([st.writtenLines, st.queuedLines, st.droppedLines], [2, 3, 2]);
  const done = sink.flush();
  release();
  await new Promise((r) => setImmediate(r));
  release();
  await done;
  assert.equal(chunks.join(''), '{"a":1}\n{"b":2}\n{"e":5}\n{"f":6}\n{"g":7}\n');
  st = sink.stats();
  assert.deepEqual([st.acceptedLines, st.writtenLines, st.droppedLines, st.queuedLines], [7, 5, 2, 0]);
});

test('a broken pipe is counted and further lines are dropped, no throw', async () => {
  const stream = new Writable({
    write(_c, _e, cb) {
      cb(Object.assign(new Error('EPIPE'), { code: 'EPIPE' }));
    },
  });
  const sink = new StreamSink({ stream });
  sink.write(LineBatch.fromLines(['{"a":1}']));
  await new Promise((r) => setImmediate(r));
  sink.write(LineBatch.fromLines(['{"b":2}', '{"c":3}']));
  await sink.flush();
  await sink.close();
  const st = sink.stats();
  assert.deepEqual([st.healthy, st.errors, st.droppedLines], [false, { EPIPE: 1 }, 2]);
});

test('FanoutSink writes to every sink and sums stats', async () => {
  const a = slowStream(1 << 20);
  const b = slowStream(1 << 20);
  const sinkA = new StreamSink({ stream: a.stream }, 'a');
  const sinkB = new StreamSink({ stream: b.stream }, 'b');
  const fan = new FanoutSink([sinkA, sinkB]);
  fan.write(LineBatch.fromLines(['{"x":1}']));
  a.release();
  b.release();
  await fan.close();
  assert.deepEqual([a.chunks.join(''), b.chunks.join('')], ['{"x":1}\n', '{"x":1}\n']);
  assert.equal(fan.stats().writtenLines, 2);
  assert.deepEqual(Object.keys(fan.statsBySink()), ['a', 'b']);
});

test('flush() waits for the stream to finish a write it accepted; idle() says when no batch is held', async () => {
  const { stream, chunks, release } = slowStream(1 << 20); // accepts (write() true) but finishes late
  const sink = new StreamSink({ stream });
  sink.write(LineBatch.fromLines(['{"a":1}']));
  assert.equal(chunks.length, 1);
  assert.equal(sink.idle(), false); // the stream still holds the slice
  let flushed = false;
  const f = sink.flush().then(() => {
    flushed = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(flushed, false);
  release();
  await f;
  assert.equal(sink.idle(), true);
});
