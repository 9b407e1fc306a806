// flows.log on a real nearly full disk (issue 14 item 7): a 64 KiB tmpfs this test mounts
// and unmounts itself. Lines that fit are written, whole; the rest wait for space.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { FileSink } from '../../../src/export/file.ts';
import { within } from '../../../src/export/write.ts';

const root = process.getuid?.() === 0;

test('a nearly full disk takes the whole lines that fit, and the rest once there is space', {
  skip: root ? false : 'mounting a tmpfs needs root',
}, async () => {
  const mnt = mkdtempSync(join(tmpdir(), 'flowlogd-filedisk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'flowlogd-file-test', mnt]);
  try {
    // 64 KiB of data pages: a 1000-byte line 65 times fills all but 536 bytes.
    const lines = Array.from({ length: 200 }, (_, i) =>
      `${JSON.stringify({ i, pad: 'x'.repeat(980) })}`.padEnd(999, ' '),
    );
    assert.ok(lines.every((l) => l.length === 999));
    const sink = new FileSink({
      directory: mnt,
      maxFileBytes: 100 << 20,
      maxFiles: 2,
      retryMinMs: 50,
      retryMaxMs: 50,
    });
    sink.write(LineBatch.fromLines(lines));
    await within(sink.flush(), 2000);
    const path = join(mnt, 'flows.log');
    const first = readFileSync(path, 'utf8');
    assert.equal(first.length, 65_000, 'the 65 lines that fit are written');
    assert.deepEqual(first.split('\n').slice(0, -1), lines.slice(0, 65));
    let s = sink.stats();
    assert.equal(s.writtenLines, 65);
    assert.equal(s.queuedLines, 135);
    assert.equal(s.droppedLines, 0);
    assert.ok((s.errors.ENOSPC ?? 0) >= 1);

    // Space comes back (the file is moved away, as a log shipper would): the rest follows,
    // whole lines only, nothing lost or doubled.
    const kept = readFileSync(path);
    unlinkSync(path);
    const parts: Buffer[] = [kept];
    for (let round = 0; round < 10 && sink.stats().queuedLines > 0; round++) {
      sink.retryNow();
      await within(sink.flush(), 2000);
      const now = readFileSync(path);
      parts.push(now);
      unlinkSync(path);
    }
    s = sink.stats();
    assert.equal(s.queuedLines, 0);
    assert.equal(s.writtenLines, 200);
    const all = Buffer.concat(parts).toString('utf8').split('\n').slice(0, -1);
    assert.deepEqual(all, lines);
    await sink.close();
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});
