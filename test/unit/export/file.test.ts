import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { type FileHandleLike, FileSink, type FileSystem } from '../../../src/export/file.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-file-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function lines(n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({ seq: from + i, pad: 'x'.repeat((from + i) % 37) }),
  );
}

/** All lines on disk, oldest first: rotated files in name order, then flows.log. */
function onDisk(d: string): { files: string[]; lines: string[]; sizes: number[] } {
  // Rotated files sort by stamp, then by the numeric '-N' suffix.
  const rank = (f: string) => {
    const m = /^(.*?)(?:-(\d+))?$/.exec(f)!;
    return [m[1]!, Number(m[2] ?? 0)] as const;
  };
  const files = readdirSync(d).sort((a, b) => {
    const [x, i] = rank(a);
    const [y, j] = rank(b);
    return x === y ? i - j : x < y ? -1 : 1;
  });
  const rotated = files.filter((f) => f !== 'flows.log');
  const ordered = [...rotated, ...(files.includes('flows.log') ? ['flows.log'] : [])];
  const out: string[] = [];
  const sizes: number[] = [];
  for (const f of ordered) {
    const text = readFileSync(join(d, f), 'utf8');
    sizes.push(Buffer.byteLength(text));
    assert.ok(text === '' || text.endsWith('\n'), `${f} ends with a complete line`);
    for (const l of text.split('\n').slice(0, -1)) {
      JSON.parse(l); // every line whole
      out.push(l);
    }
  }
  return { files: ordered, lines: out, sizes };
}

test('rotation: tiny max size gives rotated files, no line split or lost, at most N kept', async () => {
  let t = Date.UTC(2025, 0, 2, 3, 4, 5, 0);
  const sink = new FileSink({ directory: dir, maxFileBytes: 1000, maxFiles: 3, now: () => new Date(t++) });
  const written = lines(400);
  for (let i = 0; i < written.length; i += 7) sink.write(LineBatch.fromLines(written.slice(i, i + 7)));
  await sink.flush();
  await sink.close();
  const { files, lines: got, sizes } = onDisk(dir);
  assert.equal(files.length, 4);
  for (const f of files.slice(0, 3)) assert.match(f, /^flows\.log\.20250102T030405\.\d{3}Z$/);
  for (const s of sizes) assert.ok(s <= 1000, `file size ${s} ≤ 1000`);
  // What is on disk is exactly the newest lines, in order, none split.
  assert.deepEqual(got, written.slice(written.length - got.length));
  const st = sink.stats();
  assert.equal(st.writtenLines, 400);
  assert.equal(st.droppedLines, 0);
  assert.ok(st.rotations > 3);
  // Files are filled up to a line boundary: each rotated file + next line would exceed the max.
  assert.ok(sizes.slice(0, 3).every((s) => s > 1000 - 60));
});

test('rotation within one millisecond never overwrites a rotated file; pruning keeps the newest', async () => {
  const sink = new FileSink({ directory: dir, maxFileBytes: 100, maxFiles: 3, now: () => new Date(0) });
  const written = Array.from({ length: 30 }, (_, i) => `{"seq":"${String(i).padStart(2, '0')}","p":""}`); // 20 bytes with \n
  sink.write(LineBatch.fromLines(written));
  await sink.close();
  const { files, lines: got, sizes } = onDisk(dir);
  // 6 files of 5 lines were started: 5 rotated (stamp, -1 … -4), the newest 3 kept.
  assert.deepEqual(files, [
    'flows.log.19700101T000000.000Z-2',
    'flows.log.19700101T000000.000Z-3',
    'flows.log.19700101T000000.000Z-4',
    'flows.log',
  ]);
  assert.deepEqual(sizes, [100, 100, 100, 100]);
  assert.deepEqual(got, written.slice(10));
  assert.equal(sink.stats().rotations, 5);
});

test('a line longer than the maximum gets a file of its own, whole', async () => {
  const sink = new FileSink({ directory: dir, maxFileBytes: 50, maxFiles: 5, now: () => new Date(1) });
  const big = JSON.stringify({ big: 'y'.repeat(200) });
  sink.write(LineBatch.fromLines(['{"a":1}', big, '{"b":2}']));
  await sink.close();
  const { lines: got, sizes } = onDisk(dir);
  assert.deepEqual(got, ['{"a":1}', big, '{"b":2}']);
  assert.deepEqual(sizes, [8, big.length + 1, 8]);
});

test('appends to an existing flows.log and rotates it when already full', async () => {
  writeFileSync(join(dir, 'flows.log'), `${'{"old":1}\n'.repeat(10)}`); // 100 bytes
  const sink = new FileSink({ directory: dir, maxFileBytes: 100, maxFiles: 5, now: () => new Date(1) });
  sink.write(LineBatch.fromLines(['{"new":1}']));
  await sink.close();
  const { files, lines: got } = onDisk(dir);
  assert.equal(files.length, 2);
  assert.equal(got.length, 11);
  assert.equal(readFileSync(join(dir, 'flows.log'), 'utf8'), '{"new":1}\n');
});

test('directory path under a regular file (ENOTDIR): counted, no crash, queue bounded and drops oldest', async () => {
  writeFileSync(join(dir, 'afile'), 'x');
  const logged: string[] = [];
  const logger = { info() {}, warn() {}, error: (_o: object, m?: string) => logged.push(m ?? '') };
  const sink = new FileSink({
    directory: join(dir, 'afile', 'flowlogs'),
    maxFileBytes: 1 << 20,
    maxFiles: 2,
    maxQueueBytes: 100,
    retryMinMs: 60_000,
    logger,
  });
  sink.write(LineBatch.fromLines(['{"a":11111}', '{"b":22222}'])); // 12 bytes each
  await sink.flush();
  let st = sink.stats();
  assert.equal(st.healthy, false);
  assert.equal(st.errors.ENOTDIR, 1);
  assert.equal(st.queuedLines, 2);
  sink.write(LineBatch.fromLines(Array.from({ length: 10 }, (_, i) => `{"c":${10000 + i}}`))); // 12 bytes each: 12 lines = 144 > 100
  st = sink.stats();
  assert.equal(st.queuedLines, 8);
  assert.equal(st.queuedBytes, 96);
  assert.equal(st.droppedLines, 4);
  assert.equal(logged.length, 1, 'one error log per outage');
  sink.retryNow();
  await sink.flush();
  assert.equal(sink.stats().errors.ENOTDIR, 2);
  await sink.close();
  assert.equal(sink.stats().droppedLines, 12);
});

type RealWrite = (buf: Buffer, off: number, len: number, pos: null) => Promise<{ bytesWritten: number }>;

/** The real filesystem, with each file write going through `write` (given the real one). */
function realFsWith(
  write: (real: RealWrite, buf: Buffer, off: number, len: number) => Promise<{ bytesWritten: number }>,
): FileSystem {
  return {
    mkdir: fsp.mkdir as FileSystem['mkdir'],
    rename: fsp.rename,
    readdir: (p: string) => fsp.readdir(p),
    unlink: fsp.unlink,
    async open(path: string, flags: 'a'): Promise<FileHandleLike> {
      const h = await fsp.open(path, flags);
      const real: RealWrite = (buf, off, len, pos) => h.write(buf, off, len, pos);
      return {
        stat: () => h.stat(),
        truncate: (n: number) => h.truncate(n),
        close: () => h.close(),
        write: (buf, off, len) => write(real, buf, off, len),
      };
    },
  };
}

/** Real fs whose file writes can be made to fail: a short write then ENOSPC, like a full disk. */
function flakyFs(): FileSystem & { full: boolean; writes: number } {
  const fs = Object.assign(
    realFsWith(async (real, buf, off, len) => {
      fs.writes++;
      if (fs.full) {
        // The kernel accepts part of the buffer, then the disk is full.
        if (len > 1) await real(buf, off, Math.floor(len / 2), null);
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      }
      return real(buf, off, len, null);
    }),
    { full: false, writes: 0 },
  );
  return fs;
}

test('disk full mid-write: the partial line is removed, lines retried after recovery, none lost or doubled', async () => {
  const fs = flakyFs();
  const sink = new FileSink({ directory: dir, maxFileBytes: 1 << 20, maxFiles: 2, fs, retryMinMs: 1000 });
  sink.write(LineBatch.fromLines(['{"a":1}']));
  await sink.flush();
  fs.full = true;
  sink.write(LineBatch.fromLines(['{"b":2}', '{"c":3}']));
  await sink.flush();
  assert.equal(readFileSync(join(dir, 'flows.log'), 'utf8'), '{"a":1}\n');
  assert.deepEqual(sink.stats().errors, { ENOSPC: 1 });
  assert.equal(sink.stats().healthy, false);
  fs.full = false;
  sink.write(LineBatch.fromLines(['{"d":4}'])); // queued while failing, no immediate attempt
  sink.retryNow();
  await sink.flush();
  assert.equal(readFileSync(join(dir, 'flows.log'), 'utf8'), '{"a":1}\n{"b":2}\n{"c":3}\n{"d":4}\n');
  const st = sink.stats();
  assert.deepEqual([st.healthy, st.writtenLines, st.droppedLines, st.queuedLines], [true, 4, 0, 0]);
  await sink.close();
});

test('retries on its own with backoff (fake timers)', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const fs = flakyFs();
    fs.full = true;
    const sink = new FileSink({
      directory: dir,
      maxFileBytes: 1 << 20,
      maxFiles: 2,
      fs,
      retryMinMs: 1000,
      retryMaxMs: 4000,
    });
    sink.write(LineBatch.fromLines(['{"a":1}']));
    await sink.flush();
    assert.equal(fs.writes, 1);
    mock.timers.tick(1200); // first retry within 1000 ± 20 %
    await new Promise((r) => setImmediate(r));
    await sink.flush();
    assert.equal(fs.writes, 2);
    fs.full = false;
    mock.timers.tick(2400); // second retry within 2000 ± 20 %
    await new Promise((r) => setImmediate(r));
    await sink.flush();
    assert.equal(fs.writes, 3);
    assert.equal(readFileSync(join(dir, 'flows.log'), 'utf8'), '{"a":1}\n');
    await sink.close();
  } finally {
    mock.timers.reset();
  }
});

/** Real fs whose first file write waits for release(): a slow disk with one write in flight. */
function slowFs(): FileSystem & { inFlight: Promise<void>; release: () => void } {
  let started!: () => void;
  let hold = true;
  const fs = Object.assign(
    realFsWith(async (real, buf, off, len) => {
      if (hold) {
        hold = false;
        const go = new Promise<void>((r) => {
          fs.release = r;
        });
        started();
        await go;
      }
      return real(buf, off, len, null);
    }),
    {
      inFlight: new Promise<void>((r) => {
        started = r;
      }),
      release: () => {},
    },
  );
  return fs;
}

test('a queue overflow while a write is in flight drops the next lines, not the ones being written', async () => {
  const fs = slowFs();
  const sink = new FileSink({ directory: dir, maxFileBytes: 1 << 20, maxFiles: 2, maxQueueBytes: 100, fs });
  const a = '{"line":"A"}'; // 13 bytes with its newline
  const b = `{"line":"B","pad":"${'x'.repeat(75)}"}`; // 97
  const c = '{"line":"C"}';
  sink.write(LineBatch.fromLines([a])); // the write of A starts and waits
  await fs.inFlight;
  sink.write(LineBatch.fromLines([b])); // 110 > 100: A leaves the queue, but its write goes on
  sink.write(LineBatch.fromLines([c])); // 110 > 100 again: B, the oldest line not in flight, is dropped
  fs.release();
  await sink.flush();
  assert.equal(readFileSync(join(dir, 'flows.log'), 'utf8'), `${a}\n${c}\n`);
  const st = sink.stats();
  assert.deepEqual([st.writtenLines, st.droppedLines, st.queuedLines], [2, 1, 0], 'each line counted once');
  await sink.close();
});
