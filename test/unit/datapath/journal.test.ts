// The drain journal's reader (src/datapath/journal.ts): complete cycles replayed in order;
// a corrupt frame, a cut-short tail and a cycle without its end skipped and counted.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { readJournal, removeSegments } from '../../../src/datapath/journal.ts';
import {
  CycleRecord,
  RING_RECORD_CYCLE,
  RING_RECORD_FLOW,
  RING_RECORD_OVERFLOW,
  RING_RECORD_SIZE,
  Ring,
} from '../../../src/datapath/layout.ts';

/** A frame as addon/src/journal.cc writes it: `tag` in its key bytes so the test can tell frames apart. */
function flow(gen: number, tag: number, type = RING_RECORD_FLOW): Buffer {
  const f = Buffer.alloc(RING_RECORD_SIZE);
  f.writeUInt32LE(type, Ring.type);
  f.writeUInt32LE(tag, Ring.key);
  f.writeUInt32LE(gen, Ring.pad2);
  return sealed(f);
}

function cycleEnd(gen: number, records: number): Buffer {
  const f = Buffer.alloc(RING_RECORD_SIZE);
  f.writeUInt32LE(RING_RECORD_CYCLE, Ring.type);
  f.writeBigUInt64LE(BigInt(gen), CycleRecord.generation);
  f.writeBigUInt64LE(BigInt(records), CycleRecord.records);
  return sealed(f);
}

function sealed(f: Buffer): Buffer {
  f.writeUInt32LE(0, 4);
  f.writeUInt32LE(crc32(f), 4);
  return f;
}

function tags(records: Uint8Array): number[] {
  const b = Buffer.from(records);
  const out: number[] = [];
  for (let off = 0; off < b.length; off += RING_RECORD_SIZE) out.push(b.readUInt32LE(off + Ring.key));
  return out;
}

const seg = (dir: string, n: number, ...frames: Buffer[]) =>
  writeFileSync(join(dir, `journal-${String(n).padStart(16, '0')}.log`), Buffer.concat(frames));

test('journal: complete cycles replayed in order; corrupt frame, cut tail and unfinished cycle skipped and counted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-journal-'));
  try {
    const corrupt = flow(7, 72);
    corrupt.writeUInt8(corrupt.readUInt8(60) ^ 0xff, 60); // a counter byte: the CRC no longer matches
    seg(dir, 3, flow(5, 51), flow(5, 52), cycleEnd(5, 2), flow(6, 61, RING_RECORD_OVERFLOW), cycleEnd(6, 1));
    seg(
      dir,
      4,
      flow(7, 71),
      corrupt,
      flow(7, 73),
      cycleEnd(7, 3),
      // A cycle whose write failed: its frames, no end, then the next cycle (replayed: the
      // kernel deleted them after the failed cycle).
      flow(8, 81),
      flow(9, 91),
      cycleEnd(9, 1),
      // The cycle being written when the run died: no end (the kernel still has it).
      flow(10, 101),
      flow(10, 102),
      flow(10, 103).subarray(0, 50),
    );
    writeFileSync(join(dir, 'not-a-segment.log'), 'x');
    const j = readJournal(dir);
    assert.deepEqual(tags(j.records), [51, 52, 61, 71, 73, 81, 91]);
    assert.deepEqual(
      {
        cycles: j.cycles,
        corrupt: j.corrupt,
        missing: j.missing,
        incomplete: j.incomplete,
        truncatedBytes: j.truncatedBytes,
        lastGeneration: j.lastGeneration,
        segments: j.segments,
      },
      {
        cycles: 4,
        corrupt: 1,
        missing: 1,
        incomplete: 2,
        truncatedBytes: 50,
        lastGeneration: 9,
        segments: [3, 4],
      },
    );
    // A flush covering segment 3 (the addon closed it: segment_closed 4) removes it alone.
    assert.equal(removeSegments(dir, 4), 1);
    assert.deepEqual(readdirSync(dir).sort(), ['journal-0000000000000004.log', 'not-a-segment.log']);
    assert.equal(removeSegments(dir, Number.POSITIVE_INFINITY), 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('journal: an empty directory replays nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-journal-'));
  try {
    const j = readJournal(dir);
    assert.deepEqual([j.records.length, j.cycles, j.lastGeneration, j.segments], [0, 0, -1, []]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
