import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { BufferPool } from '../../../src/export/buffer-pool.ts';
import { Spool, type SpoolEntry, type SpoolFs } from '../../../src/export/spool.ts';
import { HEADER_BYTES } from '../../../src/export/spool-segment.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-spool-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A payload of `n` lines, each exactly 100 bytes with its newline, numbered from `from`. */
export function payload(n: number, from = 0): Buffer {
  let s = '';
  for (let i = 0; i < n; i++) {
    const head = JSON.stringify({ n: from + i, pad: '' });
    s += `${JSON.stringify({ n: from + i, pad: 'x'.repeat(99 - head.length) })}\n`;
  }
  return Buffer.from(s);
}

function numbers(buf: Buffer): number[] {
  return buf
    .toString()
    .split('\n')
    .slice(0, -1)
    .map((l) => (JSON.parse(l) as { n: number }).n);
}

async function drain(s: Spool): Promise<SpoolEntry[]> {
  const out: SpoolEntry[] = [];
  for (let e = s.nextToSend(); e !== null; e = s.nextToSend()) {
    e.sending = true;
    out.push(e);
  }
  return out;
}

test('batches are numbered, written, and replayed in order after a restart', async () => {
  const s = await Spool.open({ directory: dir, segmentBytes: 4096 });
  const bootId = s.bootId;
  for (let i = 0; i < 10; i++) s.append(payload(10, i * 10), 10, i % 4);
  await s.written();
  // 10 frames of 44 + 1000 bytes: three per 4 KiB segment.
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.seg')).length, 4);
  await s.close();

  const r = await Spool.open({ directory: dir, segmentBytes: 4096 });
  // A new incarnation; the batches it replays keep the one that numbered them.
  assert.notEqual(r.bootId, bootId);
  const st = r.stats();
  assert.equal(st.recoveredBatches, 10);
  assert.equal(st.recoveredLines, 100);
  assert.equal(st.backlogLines, 100);
  assert.equal(st.diskBytes, 10 * (HEADER_BYTES + 1000));
  const got = await drain(r);
  assert.deepEqual(
    got.map((e) => e.seq),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.ok(got.every((e) => e.bootId === bootId));
  assert.deepEqual(
    got.map((e) => e.level),
    [0, 1, 2, 3, 0, 1, 2, 3, 0, 1],
  );
  const all: number[] = [];
  for (const e of got) all.push(...numbers((await r.load(e))!));
  assert.deepEqual(
    all,
    Array.from({ length: 100 }, (_, i) => i),
  );
  // The sequence continues where it stopped.
  assert.equal(r.append(payload(1), 1, 0).seq, 10);
  await r.close();
});

test('acknowledged batches are not replayed; fully acknowledged segments are deleted', async () => {
  const s = await Spool.open({ directory: dir, segmentBytes: 4096 });
  for (let i = 0; i < 10; i++) s.append(payload(10, i * 10), 10, 0);
  await s.written();
  const sent = await drain(s);
  // Acknowledge 0-5 and 7: segments hold [0-2], [3-5], [6-8], [9].
  for (const e of [...sent.slice(0, 6), sent[7]!]) s.finish(e);
  await s.written();
  assert.deepEqual(
    readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort(),
    ['00000000000000000006.seg', '00000000000000000009.seg'],
  );
  assert.equal(s.stats().backlogLines, 30);
  await s.close();
  // 7 was acknowledged out of order: state.json lists it, so it is not replayed (a
  // Forward or OTLP receiver has no duplicate window to absorb it).
  const state = () => JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  assert.deepEqual(state(), { nextSeq: 10, ackedBelow: 6, acked: [7] });
  const r = await Spool.open({ directory: dir, segmentBytes: 4096 });
  const again = await drain(r);
  assert.deepEqual(
    again.map((e) => e.seq),
    [6, 8, 9],
  );
  assert.equal(r.stats().recoveredLines, 30);
  // Still so for the run after, until 6 is acknowledged too.
  assert.deepEqual(state(), { nextSeq: 10, ackedBelow: 6, acked: [7] });
  r.finish(again[1]!);
  await r.close();
  assert.deepEqual(state(), { nextSeq: 10, ackedBelow: 6, acked: [7, 8] });
  const r2 = await Spool.open({ directory: dir, segmentBytes: 4096 });
  const third = await drain(r2);
  assert.deepEqual(
    third.map((e) => e.seq),
    [6, 9],
  );
  r2.finish(third[0]!);
  await r2.close();
  assert.deepEqual(state(), { nextSeq: 10, ackedBelow: 9, acked: [] });
  const r3 = await Spool.open({ directory: dir, segmentBytes: 4096 });
  assert.deepEqual(
    (await drain(r3)).map((e) => e.seq),
    [9],
  );
  await r3.close();
});

test('a full spool drops its oldest segment, counted as spool full, and never blocks', async () => {
  // Room for 8 frames of 1044 bytes, segments of 2 frames.
  const s = await Spool.open({ directory: dir, segmentBytes: 2088, maxBytes: 8 * 1044 });
  for (let i = 0; i < 12; i++) s.append(payload(10, i * 10), 10, 0);
  await s.written();
  const st = s.stats();
  // 12 frames into room for 8: the two oldest segments (4 batches, 40 lines) went.
  assert.deepEqual(st.dropped, { 'spool full': 40 });
  assert.equal(st.backlogLines, 80);
  assert.equal(st.diskBytes, 8 * 1044);
  assert.deepEqual(
    (await drain(s)).map((e) => e.seq),
    [4, 5, 6, 7, 8, 9, 10, 11],
  );
  await s.close();
});

test('a corrupt segment is skipped and counted; the others replay', async () => {
  const s = await Spool.open({ directory: dir, segmentBytes: 2088 });
  for (let i = 0; i < 6; i++) s.append(payload(10, i * 10), 10, 0);
  await s.close();
  // Flip a payload byte of the second frame of the middle segment [2, 3].
  const mid = join(dir, '00000000000000000002.seg');
  const b = readFileSync(mid);
  b[1044 + HEADER_BYTES + 5]! ^= 0xff;
  writeFileSync(mid, b);
  const r = await Spool.open({ directory: dir, segmentBytes: 2088 });
  const st = r.stats();
  assert.equal(st.corruptSegments, 1);
  assert.equal(st.corruptBytes, 1044);
  assert.deepEqual(
    (await drain(r)).map((e) => e.seq),
    [0, 1, 2, 4, 5],
  );
  await r.close();
});

test('a torn tail (crash mid-write) loses only the torn frame', async () => {
  const s = await Spool.open({ directory: dir });
  for (let i = 0; i < 3; i++) s.append(payload(10, i * 10), 10, 0);
  await s.close();
  const seg = join(dir, '00000000000000000000.seg');
  const b = readFileSync(seg);
  writeFileSync(seg, b.subarray(0, b.length - 500));
  const r = await Spool.open({ directory: dir });
  assert.deepEqual(
    (await drain(r)).map((e) => e.seq),
    [0, 1],
  );
  assert.equal(r.stats().corruptBytes, 1044 - 500);
  // Numbering continues after the torn batch: it was sent before the crash, perhaps.
  assert.equal(r.append(payload(1), 1, 0).seq, 3);
  await r.close();
});

test('a batch acknowledged from memory before it reached the disk is never written', async () => {
  const s = await Spool.open({ directory: null });
  const e = s.append(payload(5), 5, 0);
  assert.equal(e.ready, true);
  s.finish(e);
  assert.equal(s.stats().backlogLines, 0);
  await s.close();
});

/** node:fs with writev failing with `code` while `failing()`. */
function failingFs(code: string, failing: () => boolean): SpoolFs {
  return {
    ...(fsp as unknown as SpoolFs),
    async open(path: string, flags: string) {
      const h = await fsp.open(path, flags);
      return {
        writev: (bufs: Buffer[]) =>
          failing() ? Promise.reject(Object.assign(new Error(code), { code })) : h.writev(bufs),
        read: (buf: Buffer, off: number, len: number, pos: number) => h.read(buf, off, len, pos),
        truncate: (len: number) => h.truncate(len),
        datasync: () => h.datasync(),
        close: () => h.close(),
      };
    },
  };
}

test('a disk error keeps the batch in memory (counted), and drops it under that code only when memory is short', async () => {
  let fail = true;
  const s = await Spool.open({
    directory: dir,
    maxMemoryBytes: 3000,
    fs: failingFs('ENOSPC', () => fail),
  });
  for (let i = 0; i < 5; i++) {
    s.append(payload(10, i * 10), 10, 0);
    await s.written();
  }
  const st = s.stats();
  assert.equal(st.errors.ENOSPC, 5);
  // 3000 bytes of memory hold three 1000-byte batches; the two oldest went.
  assert.deepEqual(st.dropped, { ENOSPC: 20 });
  const left = await drain(s);
  assert.deepEqual(
    left.map((e) => [e.seq, e.failed]),
    [
      [2, 'ENOSPC'],
      [3, 'ENOSPC'],
      [4, 'ENOSPC'],
    ],
  );
  // They are sent from memory and acknowledged; with space again, the next batch is
  // spooled on disk as usual.
  for (const e of left) s.finish(e);
  fail = false;
  const e = s.append(payload(10, 50), 10, 0);
  await s.written();
  assert.equal(e.failed, null);
  assert.equal(s.stats().diskBytes, 1044);
  await s.close();
});

test('a closed segment is fdatasynced and closed beside the next writes, and close() waits for that', async () => {
  const syncs: { path: string; release: () => void }[] = [];
  const closed: string[] = [];
  const fs: SpoolFs = {
    ...(fsp as unknown as SpoolFs),
    async open(path: string, flags: string) {
      const h = await fsp.open(path, flags);
      return {
        writev: (bufs: Buffer[]) => h.writev(bufs),
        read: (buf: Buffer, off: number, len: number, pos: number) => h.read(buf, off, len, pos),
        truncate: (len: number) => h.truncate(len),
        // Held until the test releases it: a slow disk.
        datasync: () => new Promise<void>((res) => syncs.push({ path, release: res })),
        close: async () => {
          closed.push(path);
          await h.close();
        },
      };
    },
  };
  // 1,000-byte batches in 2,500-byte segments: the third batch starts a second segment.
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const timers0 = timers();
  const s = await Spool.open({ directory: dir, segmentBytes: 2500, fsyncIntervalMs: 60_000, fs });
  for (let i = 0; i < 3; i++) {
    s.append(payload(10, i * 10), 10, 0);
    await s.written();
  }
  // The first segment's sync is still held, yet the third batch is written and ready.
  assert.equal(syncs.length, 1);
  assert.deepEqual(
    (await drain(s)).map((e) => e.seq),
    [0, 1, 2],
  );
  assert.equal(closed.length, 0);
  let done = false;
  const closing = s.close().then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, false); // waits for the held sync
  for (const x of syncs) x.release();
  // The second segment is synced as close() ends it; release that one too.
  while (!done) {
    for (const x of syncs.splice(0)) x.release();
    await new Promise((r) => setTimeout(r, 5));
  }
  await closing;
  assert.equal(closed.length, 2);
  // No fsync timer left behind by close() (it kept the process alive for the 60 s).
  assert.equal(timers(), timers0);
});

test('a pooled batch buffer goes back to its pool only once acknowledged and no longer being sent', async () => {
  const pool = new BufferPool(8192, 4);
  const s = await Spool.open({ directory: dir, segmentBytes: 4096 });
  const take = (from: number) => {
    const b = pool.take();
    payload(10, from).copy(b);
    return s.append(b.subarray(0, 1000), 10, 0, pool);
  };
  take(0);
  take(10);
  await s.written();
  const [a, b] = await drain(s);
  s.finish(a!); // acknowledged, but the sink still holds it
  assert.equal(pool.free, 0);
  s.sent(a!);
  assert.equal(pool.free, 1);
  // The next batch gets that buffer; b's bytes are untouched.
  const c = take(20);
  assert.equal(pool.free, 0);
  assert.deepEqual(
    numbers((await s.load(b!))!),
    Array.from({ length: 10 }, (_, i) => 10 + i),
  );
  s.sent(b!); // a delivery that ended without an ack (stopped): still spooled, buffer kept
  assert.equal(pool.free, 0);
  s.finish(b!);
  assert.equal(pool.free, 1);
  await s.written();
  s.finish(c);
  assert.equal(pool.free, 2);
  // At most `keep` free buffers are held.
  for (let i = 0; i < 6; i++) pool.release(Buffer.allocUnsafeSlow(8192));
  pool.release(Buffer.allocUnsafe(100)); // not one of its buffers: not kept
  assert.equal(pool.free, 4);
  await s.close();
});
