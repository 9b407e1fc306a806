// flows.log: JSON Lines, rotated by size (SPEC §5).
//
// - A line is never split across files: a batch is cut at line boundaries so the file
//   stays within the maximum size (a single line longer than the maximum gets a file
//   of its own).
// - A line is never half-written: after a failed or short write the file is truncated
//   back to the last complete line; the lines before it are written, the rest stay
//   queued for the next attempt (a nearly full disk takes the lines that fit).
// - A failing disk (ENOSPC, EROFS, EACCES, ENOTDIR, …) is logged once per outage and
//   counted by error code; writes are retried with jittered exponential backoff while
//   the queue, bounded in bytes, drops its oldest lines (counted).

import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirectory } from '../common/make-directory.ts';
import type { LineBatch } from './batch.ts';
import {
  BatchQueue,
  errorCode,
  newSinkStats,
  type Sink,
  type SinkLogger,
  type SinkStats,
  silentSinkLogger,
} from './sink.ts';
import { backoffMs } from './transport.ts';

export interface FileHandleLike {
  write(buffer: Buffer, offset: number, length: number, position: null): Promise<{ bytesWritten: number }>;
  truncate(len: number): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

/** The filesystem calls the sink makes (node:fs/promises fits; tests inject failures). */
export interface FileSystem {
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
  open(path: string, flags: 'a'): Promise<FileHandleLike>;
  rename(from: string, to: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  unlink(path: string): Promise<void>;
}

export interface FileSinkOptions {
  /** FlowLogsFileDirectory. */
  readonly directory: string;
  readonly fileName?: string;
  /** FlowLogsFileMaxFileSizeMB in bytes. */
  readonly maxFileBytes: number;
  /** FlowLogsFileMaxFiles: rotated files kept. */
  readonly maxFiles: number;
  /** Queue bound; default 64 MiB. */
  readonly maxQueueBytes?: number;
  /** Largest single write; default 1 MiB. */
  readonly maxWriteBytes?: number;
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  readonly logger?: SinkLogger;
  readonly fs?: FileSystem;
  readonly now?: () => Date;
}

const ROTATED_RE = /^\d{8}T\d{6}\.\d{3}Z(-\d+)?$/;

function stamp(d: Date): string {
  // 20250102T030405.678Z — sorts lexicographically in time order.
  return d.toISOString().replace(/[-:]/g, '');
}

export class FileSink implements Sink {
  readonly name = 'file';
  readonly #dir: string;
  readonly #file: string;
  readonly #path: string;
  readonly #maxFileBytes: number;
  readonly #maxFiles: number;
  readonly #maxWriteBytes: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #log: SinkLogger;
  readonly #fs: FileSystem;
  readonly #now: () => Date;
  readonly #queue: BatchQueue;
  readonly #stats: SinkStats = newSinkStats();
  #handle: FileHandleLike | null = null;
  /** Size of the current file up to its last complete line. */
  #size = 0;
  /** Set when a failed write could not be undone: truncate to this on reopen. */
  #repairTo: number | null = null;
  #pumping: Promise<void> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  /** Failed attempts in a row: the backoff's exponent (transport.ts's, shared with the network sinks). */
  #failures = 0;
  #lastRotated = '';
  #rotSeq = 0;
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  constructor(opts: FileSinkOptions) {
    this.#dir = opts.directory;
    this.#file = opts.fileName ?? 'flows.log';
    this.#path = join(this.#dir, this.#file);
    this.#maxFileBytes = opts.maxFileBytes;
    this.#maxFiles = opts.maxFiles;
    this.#maxWriteBytes = opts.maxWriteBytes ?? 1 << 20;
    this.#retryMinMs = opts.retryMinMs ?? 1000;
    this.#retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.#log = opts.logger ?? silentSinkLogger;
    // makeDirectory: Node's recursive mkdir never returns under /proc.
    this.#fs = opts.fs ?? { ...(nodeFs as unknown as FileSystem), mkdir: (p) => makeDirectory(p) };
    this.#now = opts.now ?? (() => new Date());
    this.#queue = new BatchQueue(opts.maxQueueBytes ?? 64 << 20);
  }

  get path(): string {
    return this.#path;
  }

  write(batch: LineBatch): void {
    this.#stats.acceptedLines += batch.count;
    if (this.#closed) {
      this.#stats.droppedLines += batch.count;
      return;
    }
    const dropped = this.#queue.push(batch);
    if (dropped > 0) this.#drop(dropped, 'queue full');
    // While failing, the retry timer drives the next attempt.
    if (this.#retryTimer === null) this.#kick();
  }

  #drop(n: number, reason: string): void {
    if (this.#stats.droppedLines === 0 || this.#stats.healthy) {
      this.#log.warn({ path: this.#path, dropped: n, reason }, 'flow log lines dropped');
    }
    this.#stats.droppedLines += n;
  }

  #kick(): void {
    if (this.#pumping !== null) return;
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = null;
      // Lines queued while the last batch was in flight.
      if (this.#queue.length > 0 && this.#retryTimer === null && !this.#closed) this.#kick();
      else this.#wakeIdle();
    });
  }

  #wakeIdle(): void {
    const w = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const f of w) f();
  }

  async #pump(): Promise<void> {
    while (this.#queue.length > 0) {
      try {
        await this.#writeBatch();
      } catch (err) {
        await this.#failed(err);
        return;
      }
    }
  }

  async #open(): Promise<FileHandleLike> {
    if (this.#handle !== null) return this.#handle;
    await this.#fs.mkdir(this.#dir, { recursive: true });
    const h = await this.#fs.open(this.#path, 'a');
    try {
      let { size } = await h.stat();
      if (this.#repairTo !== null && size > this.#repairTo) {
        await h.truncate(this.#repairTo);
        size = this.#repairTo;
      }
      this.#repairTo = null;
      this.#size = size;
    } catch (err) {
      await h.close().catch(() => {});
      throw err;
    }
    this.#handle = h;
    return h;
  }

  async #writeBatch(): Promise<void> {
    const h = await this.#open();
    const q = this.#queue;
    // Rotate before a line that would not fit (unless the file is empty: an oversized
    // line gets a file of its own rather than being split).
    if (this.#size > 0 && this.#size + q.peekSize() > this.#maxFileBytes) {
      await this.#rotate();
      return;
    }
    // Contiguous lines of one batch, written from the batch itself.
    const run = q.headRun(Math.min(this.#maxFileBytes - this.#size, this.#maxWriteBytes))!;
    const n = run.lines;
    const buf = run.batch.buf.subarray(run.start, run.end);
    // While the write is in flight a write() may overflow the queue and remove these very
    // lines: pinned, they are then neither counted as dropped nor dropped again after it.
    q.pin(n);
    let off = 0;
    try {
      while (off < buf.length) {
        const { bytesWritten } = await h.write(buf, off, buf.length - off, null);
        if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
        off += bytesWritten;
      }
    } catch (err) {
      // A nearly full disk takes part of a write, then says ENOSPC: the whole lines that
      // reached it stay written, only the partial line after them is undone. (Undoing
      // all of it meant no line was ever written while less than a write's size was free.)
      const whole = off > 0 ? buf.lastIndexOf(0x0a, off - 1) + 1 : 0;
      let wholeLines = 0;
      for (let i = buf.indexOf(0x0a); i >= 0 && i < whole; i = buf.indexOf(0x0a, i + 1)) wholeLines++;
      const lost = n - q.unpin(); // the oldest lines of the run, taken by an overflow meanwhile
      q.drop(Math.max(0, wholeLines - lost));
      if (lost > wholeLines) this.#drop(lost - wholeLines, 'queue full');
      this.#size += whole;
      this.#stats.writtenLines += wholeLines;
      this.#stats.writtenBytes += whole;
      await this.#undo(h);
      throw err;
    }
    q.drop(q.unpin());
    this.#size += buf.length;
    this.#stats.writtenLines += n;
    this.#stats.writtenBytes += buf.length;
    if (!this.#stats.healthy) {
      this.#stats.healthy = true;
      this.#log.info({ path: this.#path }, 'flow log file writable again');
    }
    this.#failures = 0;
  }

  /** Removes a partial batch so no half line stays in the file. */
  async #undo(h: FileHandleLike): Promise<void> {
    try {
      await h.truncate(this.#size);
    } catch {
      this.#repairTo = this.#size;
    }
  }

  async #rotate(): Promise<void> {
    const h = this.#handle;
    this.#handle = null;
    if (h !== null) await h.close().catch(() => {});
    // Two rotations within one millisecond get -1, -2, … so no rotated file is overwritten.
    const base = `${this.#file}.${stamp(this.#now())}`;
    let name = base;
    if (base === this.#lastRotated) name = `${base}-${++this.#rotSeq}`;
    else {
      this.#rotSeq = 0;
      this.#lastRotated = base;
    }
    await this.#fs.rename(this.#path, join(this.#dir, name));
    this.#size = 0;
    this.#stats.rotations++;
    await this.#prune();
  }

  async #prune(): Promise<void> {
    const prefix = `${this.#file}.`;
    const rotated = (await this.#fs.readdir(this.#dir))
      .filter((f) => f.startsWith(prefix) && ROTATED_RE.test(f.slice(prefix.length)))
      .map((f) => f.slice(prefix.length))
      .sort(compareRotated)
      .map((f) => prefix + f);
    for (const f of rotated.slice(0, Math.max(0, rotated.length - this.#maxFiles))) {
      await this.#fs.unlink(join(this.#dir, f)).catch((err: unknown) => this.#count(err));
    }
  }

  #count(err: unknown): string {
    const code = errorCode(err);
    this.#stats.errors[code] = (this.#stats.errors[code] ?? 0) + 1;
    return code;
  }

  async #failed(err: unknown): Promise<void> {
    const code = this.#count(err);
    if (this.#stats.healthy) {
      this.#stats.healthy = false;
      this.#log.error(
        { err, code, path: this.#path, queuedLines: this.#queue.length },
        'cannot write flow log file; retrying, lines queued (bounded)',
      );
    }
    // Reopen on the next attempt (the directory may have been recreated, the disk remounted).
    const h = this.#handle;
    this.#handle = null;
    if (h !== null) await h.close().catch(() => {});
    if (this.#closed) return;
    const delay = backoffMs(++this.#failures, {
      timeoutMs: 0,
      minBackoffMs: this.#retryMinMs,
      maxBackoffMs: this.#retryMaxMs,
      jitter: 0.2,
    });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#kick();
    }, delay);
    this.#retryTimer.unref();
  }

  /** Retries now instead of waiting for the backoff (SIGHUP, tests). */
  retryNow(): void {
    if (this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    if (this.#queue.length > 0) this.#kick();
  }

  flush(): Promise<void> {
    if (this.#pumping === null && (this.#queue.length === 0 || this.#retryTimer !== null))
      return Promise.resolve();
    return new Promise((res) => this.#idleWaiters.push(res));
  }

  idle(): boolean {
    return this.#pumping === null && this.#queue.length === 0;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#retryTimer !== null) this.retryNow(); // one last attempt
    await this.flush();
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const left = this.#queue.clear();
    if (left > 0) this.#drop(left, 'closed while failing');
    const h = this.#handle;
    this.#handle = null;
    if (h !== null) await h.close().catch((err: unknown) => this.#count(err));
  }

  stats(): SinkStats {
    this.#stats.queuedLines = this.#queue.length;
    this.#stats.queuedBytes = this.#queue.bytes;
    return { ...this.#stats, errors: { ...this.#stats.errors } };
  }
}

/** Compares rotation suffixes: time order, then '-N' in numeric order after the plain stamp. */
function compareRotated(a: string, b: string): number {
  const [ta, sa] = a.split('-');
  const [tb, sb] = b.split('-');
  if (ta !== tb) return ta! < tb! ? -1 : 1;
  return Number(sa ?? 0) - Number(sb ?? 0);
}
