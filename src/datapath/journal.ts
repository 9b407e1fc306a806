// The drain journal a previous run left (addon/src/journal.h), read at start: the records
// of its complete drain cycles, in order, replayed through the aggregator before this
// run's own, and the segments a written flush covers, removed after it (README,
// "Restarts"). Each 128-byte frame carries the CRC-32 of its bytes (with the CRC field
// zero); a frame that fails it is skipped and counted, and the rest is replayed.
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import {
  CycleRecord,
  RING_RECORD_CYCLE,
  RING_RECORD_FLOW,
  RING_RECORD_OVERFLOW,
  RING_RECORD_SIZE,
  Ring,
} from './layout.ts';

const SEGMENT = /^journal-(\d{16})\.log$/;
const CRC_AT = 4; // ring_record_header._reserved

export interface JournalReplay {
  /** Frames of complete cycles (and of cycles a failed write left without their end), in order. */
  readonly records: Uint8Array;
  /**
   * Frames after a segment's last cycle end: a cycle its run was writing when it died.
   * Not replayed: the entries are deleted only after a cycle is complete, so they are
   * still in the kernel maps (a restart on pinned maps drains them again), or they died
   * with the maps (no pin directory: that last cycle is lost, as the maps' current
   * generation is).
   */
  readonly incomplete: number;
  readonly cycles: number;
  /** Frames whose CRC did not match: skipped, their counts lost. */
  readonly corrupt: number;
  /** Bytes of a frame cut short at a segment's end. */
  readonly truncatedBytes: number;
  /** Records complete cycles said they had but the journal did not (corrupt or cut). */
  readonly missing: number;
  /** Generation of the last complete cycle (addon: which adopted map it already holds); -1: none. */
  readonly lastGeneration: number;
  /** Segment numbers read (all of them are covered by this run's first flush). */
  readonly segments: readonly number[];
}

/** Numbers of the journal segments in `dir`, ascending. */
export function journalSegments(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync(dir)) {
    const m = SEGMENT.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

function segmentPath(dir: string, n: number): string {
  return join(dir, `journal-${String(n).padStart(16, '0')}.log`);
}

/** Whether the 128-byte frame at `off` carries its own CRC. */
function frameOk(buf: Buffer, off: number): boolean {
  const frame = Buffer.from(buf.subarray(off, off + RING_RECORD_SIZE));
  const want = frame.readUInt32LE(CRC_AT);
  frame.writeUInt32LE(0, CRC_AT);
  return crc32(frame) === want;
}

/** Reads every segment of `dir` (see JournalReplay). */
export function readJournal(dir: string): JournalReplay {
  const segments = journalSegments(dir);
  const kept: Buffer[] = [];
  let incomplete = 0;
  let cycles = 0;
  let corrupt = 0;
  let truncatedBytes = 0;
  let missing = 0;
  let lastGeneration = -1;
  for (const n of segments) {
    const buf = readFileSync(segmentPath(dir, n));
    const whole = buf.length - (buf.length % RING_RECORD_SIZE);
    truncatedBytes += buf.length - whole;
    // Frames since the last cycle end, with their cycle's generation.
    let pending: { off: number; gen: number }[] = [];
    for (let off = 0; off < whole; off += RING_RECORD_SIZE) {
      if (!frameOk(buf, off)) {
        corrupt++;
        continue;
      }
      const type = buf.readUInt32LE(off + Ring.type);
      if (type === RING_RECORD_FLOW || type === RING_RECORD_OVERFLOW) {
        pending.push({ off, gen: buf.readUInt32LE(off + Ring.pad2) });
        continue;
      }
      if (type !== RING_RECORD_CYCLE) {
        corrupt++;
        continue;
      }
      const gen = Number(buf.readBigUInt64LE(off + CycleRecord.generation));
      const said = Number(buf.readBigUInt64LE(off + CycleRecord.records));
      // A cycle whose write failed left frames without its end: they are counts the
      // kernel no longer has (it deletes after every cycle), so they are replayed too.
      const mine = pending.filter((p) => p.gen === gen >>> 0).length;
      for (const p of pending) kept.push(buf.subarray(p.off, p.off + RING_RECORD_SIZE));
      missing += Math.max(0, said - mine);
      pending = [];
      cycles++;
      lastGeneration = gen;
    }
    incomplete += pending.length;
  }
  return {
    records: Buffer.concat(kept),
    incomplete,
    cycles,
    corrupt,
    truncatedBytes,
    missing,
    lastGeneration,
    segments,
  };
}

/** Removes the segments numbered below `end` (a written flush covers them); returns how many. */
export function removeSegments(dir: string, end: number): number {
  let n = 0;
  for (const s of journalSegments(dir)) {
    if (s >= end) break;
    try {
      unlinkSync(segmentPath(dir, s));
      n++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return n;
}
