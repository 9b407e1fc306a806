// A network sink's bounded on-disk spool: every batch is numbered and written to a
// segment file (spool-segment.ts) before it is sent, and stays there until the remote
// acknowledges it; after a reconnect or a restart what is unacknowledged is sent again
// in sequence order.
//
// - Sizes: at most `maxBytes` of segment files (default 256 MiB), in segments of
//   `segmentBytes` (default 8 MiB); at most `maxMemoryBytes` (default 32 MiB) of batch
//   data also kept in memory (the rest is read back from disk when it is sent).
// - Full: the oldest segment goes, its unacknowledged lines counted as dropped
//   ('spool full'); appending never waits for room and never fails.
// - fsync: a segment is fdatasync'ed when it is closed and, while written to, every
//   `fsyncIntervalMs` (default 1 s; 0 = after every batch). A killed flowlogd loses
//   nothing (the page cache has it); a kernel crash or power cut at most that interval.
// - Disk errors (ENOSPC, EIO, ...): the batch is counted by error code and kept in
//   memory only, still sent; if memory is short too it is dropped, counted under that code.
// - Sequence: `state.json` (spool-recover.ts) holds the next sequence number, the highest
//   number below which everything was acknowledged and the batches acknowledged above it
//   (out of order: a restart does not replay them); each start is a new incarnation (bootId), and each
//   frame keeps the bootId that numbered it (a replay keeps its id); a batch is sent only
//   once it is on disk, and a segment deleted only after the state is saved, so a restart
//   never reuses a number that was sent. A corrupt frame ends its segment's replay: the
//   rest of that segment is counted ('corrupt') and skipped, the other segments replay.

import { randomUUID } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';
import type { BufferPool } from './buffer-pool.ts';
import { errorCode } from './sink.ts';
import {
  newStats,
  readState,
  recover,
  type Segment,
  type SpoolEntry,
  type SpoolStats,
  type State,
  writeState,
} from './spool-recover.ts';
import {
  encodeHeader,
  HEADER_BYTES,
  readFrame,
  type SpoolFile,
  type SpoolFs,
  segmentName,
} from './spool-segment.ts';

export type { SpoolEntry, SpoolStats } from './spool-recover.ts';
export type { SpoolFile, SpoolFs } from './spool-segment.ts';

export interface SpoolOptions {
  /** null: memory only (no durability across restarts). */
  readonly directory: string | null;
  readonly maxBytes?: number;
  readonly segmentBytes?: number;
  readonly maxMemoryBytes?: number;
  readonly fsyncIntervalMs?: number;
  /** Acknowledgements reach state.json within this long (default 250 ms); a restart replays what came after. */
  readonly stateIntervalMs?: number;
  readonly fs?: SpoolFs;
}

export class Spool {
  /** This incarnation (a new one each open): batches appended now carry it. */
  readonly bootId = randomUUID();
  readonly #dir: string | null;
  readonly #fs: SpoolFs;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #maxMemory: number;
  readonly #fsyncMs: number;
  /** Closed segments whose fdatasync and close are under way (#closeActive). */
  readonly #closingSegments = new Set<Promise<void>>();
  readonly #stateMs: number;
  /** Unfinished entries in sequence order, from #head. */
  #entries: SpoolEntry[] = [];
  #head = 0;
  #segments: Segment[] = [];
  #active: Segment | null = null;
  #nextSeq: number;
  /** Everything below this sequence number is acknowledged or dropped. */
  #ackedBelow: number;
  /** Acknowledged above #ackedBelow by an earlier run (their frames are still in live segments). */
  #ackedBefore: number[] = [];
  #io: Promise<void> = Promise.resolve();
  #stateDirty = false;
  #stateTimer: NodeJS.Timeout | null = null;
  #syncTimer: NodeJS.Timeout | null = null;
  #unsynced = false;
  #closed = false;
  readonly #stats: SpoolStats;
  /** Called when an entry becomes ready to send. */
  onReady: () => void = () => {};

  private constructor(o: SpoolOptions, state: State) {
    this.#dir = o.directory;
    this.#fs = o.fs ?? (nodeFs as unknown as SpoolFs);
    this.#maxBytes = o.maxBytes ?? 256 << 20;
    this.#segmentBytes = Math.min(o.segmentBytes ?? 8 << 20, this.#maxBytes);
    this.#maxMemory = o.maxMemoryBytes ?? 32 << 20;
    this.#fsyncMs = o.fsyncIntervalMs ?? 1000;
    this.#stateMs = o.stateIntervalMs ?? 250;
    this.#nextSeq = state.nextSeq;
    this.#ackedBelow = state.ackedBelow;
    this.#stats = newStats(state.nextSeq);
  }

  /** Opens (creating) the spool directory and loads what it holds unacknowledged. */
  static async open(o: SpoolOptions): Promise<Spool> {
    if (o.directory === null) return new Spool(o, { nextSeq: 0, ackedBelow: 0, acked: [] });
    const fs = o.fs ?? (nodeFs as unknown as SpoolFs);
    await fs.mkdir(o.directory, { recursive: true });
    const state = await readState(fs, o.directory);
    const spool = new Spool(o, state);
    const r = await recover(fs, o.directory, state, spool.#maxMemory, spool.#stats, (err) =>
      spool.#error(err),
    );
    spool.#entries = r.entries;
    spool.#segments = r.segments;
    spool.#nextSeq = r.nextSeq;
    spool.#ackedBelow = r.ackedBelow;
    spool.#ackedBefore = state.acked.filter((n) => n >= r.ackedBelow);
    spool.#stateDirty = true;
    await spool.#saveState();
    return spool;
  }

  get directory(): string | null {
    return this.#dir;
  }

  /**
   * Numbers and queues a batch (a copy the spool owns); it is written, then offered to
   * send. With `pool`, `data` is a view of a buffer taken from it, given back when the
   * batch is acknowledged or dropped and nothing reads it any more.
   */
  append(data: Buffer, count: number, level: number, pool: BufferPool | null = null): SpoolEntry {
    const e: SpoolEntry = {
      seq: this.#nextSeq++,
      bootId: this.bootId,
      level,
      count,
      bytes: data.length,
      data,
      seg: null,
      offset: 0,
      ready: this.#dir === null,
      failed: null,
      done: false,
      sending: false,
      writing: false,
      pool,
      pooled: pool === null ? null : data,
    };
    this.#entries.push(e);
    this.#stats.batches++;
    this.#stats.backlogLines += count;
    this.#stats.backlogBytes += data.length;
    this.#stats.memoryBytes += data.length;
    this.#stateDirty = true;
    if (this.#dir !== null) this.#enqueue(() => this.#write(e));
    this.#trimMemory();
    if (e.ready) this.onReady();
    return e;
  }

  /** The oldest entry that is ready and not being sent. */
  nextToSend(): SpoolEntry | null {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const e = this.#entries[i]!;
      if (!e.done && !e.sending) return e.ready ? e : null;
    }
    return null;
  }

  /** The entry's payload, from memory or read back from its segment; null when unreadable. */
  async load(e: SpoolEntry): Promise<Buffer | null> {
    if (e.data !== null) return e.data;
    if (e.seg === null || this.#dir === null) return null;
    let file: SpoolFile | null = null;
    try {
      file = await this.#fs.open(join(this.#dir, e.seg.name), 'r');
      const buf = Buffer.allocUnsafe(HEADER_BYTES + e.bytes);
      const { bytesRead } = await file.read(buf, 0, buf.length, e.offset);
      const f = readFrame(buf.subarray(0, bytesRead), 0);
      return f !== null && f.seq === e.seq ? f.payload : null;
    } catch (err) {
      this.#error(err);
      return null;
    } finally {
      await file?.close().catch(() => {});
    }
  }

  /** The remote has it (or it is given up on with `dropReason`): forget it, free its segment. */
  finish(e: SpoolEntry, dropReason?: string): void {
    if (e.done) return;
    e.done = true;
    this.#stats.batches--;
    if (dropReason !== undefined) this.#count(this.#stats.dropped, dropReason, e.count);
    this.#stats.backlogLines -= e.count;
    this.#stats.backlogBytes -= e.bytes;
    if (e.data !== null) this.#stats.memoryBytes -= e.bytes;
    e.data = null;
    this.#giveBack(e);
    e.sending = false;
    const seg = e.seg;
    if (seg !== null && --seg.live === 0 && seg !== this.#active) this.#enqueue(() => this.#delete(seg));
    // Advance past finished entries at the head; compact now and then. Every number
    // below the first unfinished entry is done (a number with no entry was acknowledged
    // in an earlier run, or never reached the spool).
    while (this.#head < this.#entries.length && this.#entries[this.#head]!.done) this.#head++;
    this.#ackedBelow = this.#head < this.#entries.length ? this.#entries[this.#head]!.seq : this.#nextSeq;
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    this.#stateDirty = true;
    this.#scheduleState();
  }

  /** The sink is done with the entry (its delivery ended, however): its buffer may go back. */
  sent(e: SpoolEntry): void {
    e.sending = false;
    this.#giveBack(e);
  }

  /** The pooled buffer goes back once the spool no longer keeps the data and neither a send nor a write reads it. */
  #giveBack(e: SpoolEntry): void {
    if (e.pooled === null || e.data !== null || e.sending || e.writing) return;
    e.pool!.release(e.pooled);
    e.pooled = null;
  }

  async #write(e: SpoolEntry): Promise<void> {
    if (e.done) return; // acknowledged or dropped before its turn: nothing to keep
    e.writing = true;
    try {
      await this.#writeFrame(e, e.data!);
    } finally {
      e.writing = false;
      this.#giveBack(e);
    }
  }

  /** `data`: the entry's, held (e.writing) even if the entry is dropped meanwhile. */
  async #writeFrame(e: SpoolEntry, data: Buffer): Promise<void> {
    const frame = HEADER_BYTES + e.bytes;
    try {
      const cur = this.#active;
      if (cur !== null && cur.size > 0 && cur.size + frame > this.#segmentBytes) await this.#closeActive();
      this.#makeRoom(frame);
      let seg = this.#active;
      if (seg === null) {
        seg = { name: segmentName(e.seq), size: 0, live: 0, file: null };
        seg.file = await this.#fs.open(join(this.#dir!, seg.name), 'a');
        this.#segments.push(seg);
        this.#active = seg;
      }
      const header = encodeHeader(e.seq, e.bootId, e.count, e.level, data);
      let written = 0;
      try {
        written = (await seg.file!.writev([header, data])).bytesWritten;
        if (written !== frame) throw Object.assign(new Error('short write'), { code: 'EIO' });
      } catch (err) {
        // No half frame stays behind; a truncate that fails leaves a torn tail that the
        // next open skips as corrupt.
        await seg.file!.truncate(seg.size).catch(() => {});
        throw err;
      }
      e.seg = seg;
      e.offset = seg.size;
      seg.size += frame;
      seg.live++;
      this.#stats.diskBytes += frame;
      this.#unsynced = true;
      if (this.#fsyncMs === 0) await this.#sync();
      else this.#syncTimer ??= setTimeout(() => this.#enqueue(() => this.#sync()), this.#fsyncMs);
    } catch (err) {
      e.failed = this.#error(err);
      // Start a fresh segment next time (the disk may have been remounted or freed).
      await this.#closeActive().catch(() => {});
    }
    if (e.done) return;
    e.ready = true;
    this.#trimMemory();
    this.onReady();
  }

  /** Drops whole oldest segments until `frame` more bytes fit within maxBytes. */
  #makeRoom(frame: number): void {
    while (this.#stats.diskBytes + frame > this.#maxBytes && this.#segments.length > 0) {
      const seg = this.#segments[0]!;
      if (seg === this.#active) {
        // Only the active segment is left: it makes way for the new frame (a new segment).
        this.#active = null;
      }
      for (let i = this.#head; i < this.#entries.length; i++) {
        const e = this.#entries[i]!;
        if (e.seg === seg && !e.done) this.finish(e, 'spool full');
      }
      this.#segments.shift();
      this.#stats.diskBytes -= seg.size;
      void seg.file?.close().catch(() => {});
      seg.file = null;
      void this.#fs.unlink(join(this.#dir!, seg.name)).catch((err: unknown) => this.#error(err));
    }
  }

  /** Keeps batch data in memory within maxMemoryBytes: on-disk copies go first, then the oldest unwritten. */
  #trimMemory(): void {
    if (this.#stats.memoryBytes <= this.#maxMemory) return;
    for (let i = this.#head; i < this.#entries.length && this.#stats.memoryBytes > this.#maxMemory; i++) {
      const e = this.#entries[i]!;
      if (e.done || e.data === null || e.sending || e.seg === null) continue;
      e.data = null;
      this.#stats.memoryBytes -= e.bytes;
      this.#giveBack(e);
    }
    for (let i = this.#head; i < this.#entries.length && this.#stats.memoryBytes > this.#maxMemory; i++) {
      const e = this.#entries[i]!;
      if (e.done || e.data === null || e.sending || e.seg !== null) continue;
      this.finish(e, e.failed ?? 'memory full');
    }
  }

  /**
   * Ends the active segment. Its fdatasync and close run beside the writes that follow:
   * awaited here, every 8 MiB rollover held the next batch's write (and the flush waiting
   * for it) for a disk flush, 12 of them in a 100k-record flush (BENCHMARKS.md,
   * shipping). Nothing waits for a sync to send (a batch is sent once written), so what
   * a crash can lose is unchanged; close() waits for them.
   */
  async #closeActive(): Promise<void> {
    const seg = this.#active;
    if (seg === null) return;
    this.#active = null;
    const file = seg.file;
    if (file !== null) {
      const closing: Promise<void> = this.#sync(seg)
        .then(() => file.close())
        .catch(() => {})
        .finally(() => {
          if (seg.file === file) seg.file = null;
          this.#closingSegments.delete(closing);
        });
      this.#closingSegments.add(closing);
    }
    if (seg.live === 0) await this.#delete(seg);
  }

  async #sync(seg = this.#active): Promise<void> {
    if (seg === this.#active) {
      if (this.#syncTimer !== null) clearTimeout(this.#syncTimer);
      this.#syncTimer = null;
      if (!this.#unsynced) return;
      this.#unsynced = false;
    }
    await seg?.file?.datasync().catch((err: unknown) => this.#error(err));
  }

  async #delete(seg: Segment): Promise<void> {
    const i = this.#segments.indexOf(seg);
    if (i < 0 || seg.live > 0 || seg === this.#active) return;
    // The state first: a restart must not reuse a sequence number this segment carried.
    await this.#saveState();
    this.#segments.splice(i, 1);
    this.#stats.diskBytes -= seg.size;
    await seg.file?.close().catch(() => {});
    await this.#fs.unlink(join(this.#dir!, seg.name)).catch((err: unknown) => this.#error(err));
  }

  #scheduleState(): void {
    if (this.#dir === null || this.#stateTimer !== null || this.#closed) return;
    this.#stateTimer = setTimeout(() => {
      this.#stateTimer = null;
      this.#enqueue(() => this.#saveState());
    }, this.#stateMs);
  }

  async #saveState(): Promise<void> {
    if (this.#dir === null || !this.#stateDirty) return;
    this.#stateDirty = false;
    // Acknowledged out of order: the finished entries past the head (state.json's `acked`).
    this.#ackedBefore = this.#ackedBefore.filter((n) => n >= this.#ackedBelow);
    const acked: number[] = [...this.#ackedBefore];
    for (let i = this.#head; i < this.#entries.length; i++)
      if (this.#entries[i]!.done) acked.push(this.#entries[i]!.seq);
    const s: State = { nextSeq: this.#nextSeq, ackedBelow: this.#ackedBelow, acked };
    try {
      await writeState(this.#fs, this.#dir, s);
    } catch (err) {
      this.#stateDirty = true;
      this.#error(err);
    }
  }

  #enqueue(job: () => Promise<void>): void {
    this.#io = this.#io.then(job, job);
  }

  /** Resolves when every append so far has been written (or has failed). */
  written(): Promise<void> {
    return this.#io;
  }

  #error(err: unknown): string {
    const code = errorCode(err);
    this.#count(this.#stats.errors, code, 1);
    return code;
  }

  #count(m: Record<string, number>, k: string, n: number): void {
    m[k] = (m[k] ?? 0) + n;
  }

  /** Finishes writing, syncs, saves the state. What is unacknowledged stays for the next open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#stateTimer !== null) clearTimeout(this.#stateTimer);
    this.#stateTimer = null;
    await this.#io;
    if (this.#dir === null) return;
    await this.#closeActive();
    await Promise.all(this.#closingSegments);
    // The active segment was synced as it closed: a pending fsync timer has nothing left
    // to do, and would keep the process alive until it fired (60 s with a long interval).
    if (this.#syncTimer !== null) clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
    for (const seg of this.#segments) await seg.file?.close().catch(() => {});
    this.#stateDirty = true;
    await this.#saveState();
  }

  stats(): SpoolStats {
    this.#stats.segments = this.#segments.length;
    this.#stats.nextSeq = this.#nextSeq;
    return { ...this.#stats, dropped: { ...this.#stats.dropped }, errors: { ...this.#stats.errors } };
  }
}
