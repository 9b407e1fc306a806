// The common shape of flow log outputs, so the daemon can fan records out to several.

import { LineBatch } from './batch.ts';

export interface SinkStats {
  /** Lines accepted by write(). */
  acceptedLines: number;
  writtenLines: number;
  writtenBytes: number;
  /** Lines dropped because the queue was full (sink slow or failing) or the sink closed. */
  droppedLines: number;
  queuedLines: number;
  queuedBytes: number;
  /** Failures by error code (ENOSPC, EACCES, ENOTDIR, EPIPE, …). */
  errors: Record<string, number>;
  /** false while the last attempt failed. */
  healthy: boolean;
  rotations: number;
}

export interface Sink {
  readonly name: string;
  /**
   * Queues a batch of whole lines. Never throws and never blocks: when the bounded queue
   * is full the oldest queued lines are dropped and counted.
   */
  write(batch: LineBatch): void;
  /** Resolves when what was queued has been written, or the sink is failing (it keeps retrying). */
  flush(): Promise<void>;
  /** Flushes what it can, then releases resources. Idempotent. */
  close(): Promise<void>;
  /**
   * Holds no line batch: nothing queued and no write in flight (so a batch's buffer may be
   * reused). A stream sink counts a write until the stream's callback for it: a Transform
   * or PassThrough calls back while its readable side may still hold the chunk, so give
   * StreamSink a stream that writes out (stdout, a file, a socket), not one of those.
   */
  idle(): boolean;
  stats(): SinkStats;
  /**
   * Gives up what close() could not finish by the exit deadline (a stalled pipe): drops
   * and counts every line it still holds, so exiting loses only counted lines.
   */
  abandon?(): void;
}

/** Pino-compatible logger subset. */
export interface SinkLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentSinkLogger: SinkLogger = { info() {}, warn() {}, error() {} };

export function newSinkStats(): SinkStats {
  return {
    acceptedLines: 0,
    writtenLines: 0,
    writtenBytes: 0,
    droppedLines: 0,
    queuedLines: 0,
    queuedBytes: 0,
    errors: {},
    healthy: true,
    rotations: 0,
  };
}

export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/** Contiguous lines at the head of a queue: `batch.buf` bytes [start, end), `lines` of them. */
export interface Run {
  readonly batch: LineBatch;
  readonly start: number;
  readonly end: number;
  readonly lines: number;
}

/**
 * A FIFO of line batches bounded in bytes: pushing beyond the bound drops the oldest
 * lines (whole batches when it can, else lines off the head of the oldest).
 */
export class BatchQueue {
  #batches: LineBatch[] = [];
  /** Index of the oldest batch still queued, and of its first line still queued. */
  #head = 0;
  #line = 0;
  #lines = 0;
  #bytes = 0;
  /** Head lines a write has in flight (see pin()), and how many of them overflow removed since. */
  #pinned = 0;
  #pinnedGone = 0;
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Lines queued. */
  get length(): number {
    return this.#lines;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Queues a batch; returns how many lines (old or its own) were dropped to stay within
   * the bound. Pinned lines an overflow removes are not among them: their write is under
   * way, and unpin() says how many of them are still queued.
   */
  push(batch: LineBatch): number {
    if (batch.count === 0) return 0;
    this.#batches.push(batch);
    this.#lines += batch.count;
    this.#bytes += batch.bytes;
    let dropped = 0;
    while (this.#bytes > this.maxBytes) {
      // As few of the oldest lines as bring the queue within its bound.
      const b = this.#batches[this.#head]!;
      const from = b.start(this.#line);
      const excess = this.#bytes - this.maxBytes;
      let k = this.#line;
      while (k < b.count - 1 && b.ends[k]! - from < excess) k++;
      const n = k - this.#line + 1;
      const pinned = Math.min(n, this.#pinned - this.#pinnedGone);
      this.#pinnedGone += pinned;
      this.drop(n);
      dropped += n - pinned;
    }
    return dropped;
  }

  /** Marks the oldest n lines as being written: an overflow meanwhile does not count them as dropped. */
  pin(n: number): void {
    this.#pinned = n;
    this.#pinnedGone = 0;
  }

  /** Ends a write's pin; returns how many of its lines are still at the head of the queue. */
  unpin(): number {
    const left = this.#pinned - this.#pinnedGone;
    this.#pinned = 0;
    this.#pinnedGone = 0;
    return left;
  }

  /** Bytes of the oldest queued line, newline included (0 when empty). */
  peekSize(): number {
    if (this.#lines === 0) return 0;
    return this.#batches[this.#head]!.size(this.#line);
  }

  /**
   * The oldest line and those after it in the same batch while the total stays within
   * `maxBytes` (the oldest line always, whatever its size).
   */
  headRun(maxBytes: number): Run | null {
    if (this.#lines === 0) return null;
    const b = this.#batches[this.#head]!;
    const start = b.start(this.#line);
    let i = this.#line + 1;
    while (i < b.count && b.ends[i]! - start <= maxBytes) i++;
    return { batch: b, start, end: b.ends[i - 1]!, lines: i - this.#line };
  }

  /** Removes the oldest n lines. */
  drop(n: number): void {
    while (n > 0 && this.#lines > 0) {
      const b = this.#batches[this.#head]!;
      const take = Math.min(n, b.count - this.#line);
      this.#bytes -= b.start(this.#line + take) - b.start(this.#line);
      this.#lines -= take;
      this.#line += take;
      n -= take;
      if (this.#line === b.count) {
        this.#batches[this.#head] = EMPTY;
        this.#head++;
        this.#line = 0;
      }
    }
    if (this.#head > 64 && this.#head * 2 > this.#batches.length) {
      this.#batches = this.#batches.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Empties the queue; returns how many lines it held. */
  clear(): number {
    const n = this.#lines;
    this.#pinned = 0;
    this.#pinnedGone = 0;
    this.#batches = [];
    this.#head = 0;
    this.#line = 0;
    this.#lines = 0;
    this.#bytes = 0;
    return n;
  }
}

const EMPTY = LineBatch.fromLines([]);

/** Writes every line to every sink. */
export class FanoutSink implements Sink {
  readonly name = 'fanout';
  readonly #sinks: readonly Sink[];
  constructor(sinks: readonly Sink[]) {
    this.#sinks = sinks;
  }
  write(batch: LineBatch): void {
    for (const s of this.#sinks) s.write(batch); // one buffer, shared by every sink
  }
  async flush(): Promise<void> {
    await Promise.all(this.#sinks.map((s) => s.flush()));
  }
  abandon(): void {
    for (const s of this.#sinks) s.abandon?.();
  }

  async close(): Promise<void> {
    await Promise.all(this.#sinks.map((s) => s.close()));
  }
  idle(): boolean {
    return this.#sinks.every((s) => s.idle());
  }
  stats(): SinkStats {
    const all = newSinkStats();
    for (const s of this.#sinks) {
      const x = s.stats();
      all.acceptedLines += x.acceptedLines;
      all.writtenLines += x.writtenLines;
      all.writtenBytes += x.writtenBytes;
      all.droppedLines += x.droppedLines;
      all.queuedLines += x.queuedLines;
      all.queuedBytes += x.queuedBytes;
      all.rotations += x.rotations;
      all.healthy &&= x.healthy;
      for (const [k, v] of Object.entries(x.errors)) all.errors[k] = (all.errors[k] ?? 0) + v;
    }
    return all;
  }
  /** Per-sink stats for metrics labelled by sink name. */
  statsBySink(): Record<string, SinkStats> {
    return Object.fromEntries(this.#sinks.map((s) => [s.name, s.stats()]));
  }
}
