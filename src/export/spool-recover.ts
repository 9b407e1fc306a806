// What a spool keeps across restarts, and reading it back at open: `state.json` (the
// next sequence number, the number below which everything was acknowledged, and the
// batches acknowledged above it) and the segments' frames that were not acknowledged.
//
// Acknowledgements come out of order (several batches are in flight), so "everything
// below N" alone would replay the batches acknowledged after a slower one: a Forward or
// OTLP receiver, which has no duplicate window, got them twice. The state lists them
// (`acked`, at most as many as the batches spooled), and a restart replays only what
// the remote has not acknowledged, as of the last state saved (within
// `stateIntervalMs`, and at every close).

import { join } from 'node:path';
import type { BufferPool } from './buffer-pool.ts';
import { SEGMENT_RE, type SpoolFile, type SpoolFs, scanSegment } from './spool-segment.ts';

export interface Segment {
  readonly name: string;
  size: number;
  /** Frames on disk not yet acknowledged or dropped. */
  live: number;
  file: SpoolFile | null;
}

export interface SpoolEntry {
  readonly seq: number;
  /** The incarnation that numbered it (message ids are node, bootId, seq). */
  readonly bootId: string;
  readonly level: number;
  readonly count: number;
  readonly bytes: number;
  /** The payload while it is held in memory. */
  data: Buffer | null;
  seg: Segment | null;
  offset: number;
  /** On disk (or the spool is memory only, or writing failed): it may be sent. */
  ready: boolean;
  /** Writing it failed with this code: it exists only in memory. */
  failed: string | null;
  done: boolean;
  /** Held by the sink (being sent): not evicted from memory. */
  sending: boolean;
  /** Being written to its segment (the write reads `data`). */
  writing: boolean;
  /** The pool `data` came from: given back once neither the sink nor a write holds it. */
  pool: BufferPool | null;
  /** The pooled buffer behind `data`, until given back. */
  pooled: Buffer | null;
}

export interface SpoolStats {
  /** Lines and bytes appended and neither acknowledged nor dropped. */
  backlogLines: number;
  backlogBytes: number;
  batches: number;
  diskBytes: number;
  segments: number;
  memoryBytes: number;
  /** Lines dropped, by reason ('spool full', 'memory full', 'corrupt', an error code). */
  dropped: Record<string, number>;
  /** Spool write/read failures by error code. */
  errors: Record<string, number>;
  corruptSegments: number;
  corruptBytes: number;
  /** Batches and lines found unacknowledged on disk at open. */
  recoveredBatches: number;
  recoveredLines: number;
  nextSeq: number;
}

export interface State {
  nextSeq: number;
  ackedBelow: number;
  /** Sequence numbers at or above ackedBelow that are acknowledged (or dropped) too. */
  acked: number[];
}

export function newStats(nextSeq: number): SpoolStats {
  return {
    backlogLines: 0,
    backlogBytes: 0,
    batches: 0,
    diskBytes: 0,
    segments: 0,
    memoryBytes: 0,
    dropped: {},
    errors: {},
    corruptSegments: 0,
    corruptBytes: 0,
    recoveredBatches: 0,
    recoveredLines: 0,
    nextSeq,
  };
}

/** The saved state; a new spool's (or an unreadable file's) starts numbering again, under a new bootId. */
export async function readState(fs: SpoolFs, dir: string): Promise<State> {
  try {
    const s = JSON.parse((await fs.readFile(join(dir, 'state.json'))).toString()) as Partial<State>;
    if (Number.isSafeInteger(s.nextSeq) && Number.isSafeInteger(s.ackedBelow)) {
      const acked = Array.isArray(s.acked) ? s.acked.filter((n) => Number.isSafeInteger(n)) : [];
      return { nextSeq: s.nextSeq!, ackedBelow: s.ackedBelow!, acked };
    }
  } catch {
    // fall through
  }
  return { nextSeq: 0, ackedBelow: 0, acked: [] };
}

/** Written whole to a temporary file and renamed over the old one: never half a state. */
export async function writeState(fs: SpoolFs, dir: string, s: State): Promise<void> {
  const tmp = join(dir, 'state.json.tmp');
  await fs.writeFile(tmp, JSON.stringify(s));
  await fs.rename(tmp, join(dir, 'state.json'));
}

export interface Recovered {
  /** Unacknowledged batches in sequence order. */
  readonly entries: SpoolEntry[];
  /** Segments holding any of them (the others are deleted). */
  readonly segments: Segment[];
  readonly nextSeq: number;
  readonly ackedBelow: number;
}

/**
 * Reads every segment in `dir` and keeps the frames the state does not mark
 * acknowledged, their payloads in memory up to `maxMemory` bytes (the rest is read back
 * when sent); counts into `stats`; deletes segments with nothing left to send.
 */
export async function recover(
  fs: SpoolFs,
  dir: string,
  state: State,
  maxMemory: number,
  stats: SpoolStats,
  onError: (err: unknown) => void,
): Promise<Recovered> {
  const names = (await fs.readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
  const acked = new Set(state.acked);
  const entries: SpoolEntry[] = [];
  const segments: Segment[] = [];
  let maxSeq = state.nextSeq - 1;
  for (const name of names) {
    const path = join(dir, name);
    const scan = scanSegment(await fs.readFile(path));
    const seg: Segment = { name, size: scan.goodEnd, live: 0, file: null };
    if (scan.badBytes > 0) {
      stats.corruptSegments++;
      stats.corruptBytes += scan.badBytes;
    }
    for (const f of scan.frames) {
      maxSeq = Math.max(maxSeq, f.seq);
      const last = entries.at(-1);
      if (f.seq < state.ackedBelow || acked.has(f.seq) || (last !== undefined && f.seq <= last.seq)) continue;
      const keep = stats.memoryBytes + f.bytes <= maxMemory;
      entries.push({
        seq: f.seq,
        bootId: f.bootId,
        level: f.level,
        count: f.count,
        bytes: f.bytes,
        data: keep ? Buffer.from(f.payload) : null,
        seg,
        offset: f.offset,
        ready: true,
        failed: null,
        done: false,
        sending: false,
        writing: false,
        pool: null,
        pooled: null,
      });
      if (keep) stats.memoryBytes += f.bytes;
      stats.batches++;
      seg.live++;
      stats.backlogLines += f.count;
      stats.backlogBytes += f.bytes;
      stats.recoveredBatches++;
      stats.recoveredLines += f.count;
    }
    if (seg.live === 0) {
      await fs.unlink(path).catch(onError);
      continue;
    }
    segments.push(seg);
    stats.diskBytes += seg.size;
  }
  const nextSeq = maxSeq + 1;
  const ackedBelow = entries.length > 0 ? Math.max(state.ackedBelow, entries[0]!.seq) : nextSeq;
  return { entries, segments, nextSeq, ackedBelow };
}
