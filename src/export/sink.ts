// The common shape of flow log outputs, so the daemon can fan records out to several.

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
   * Queues whole lines (without newline). Never throws and never blocks: when the bounded
   * queue is full the oldest queued lines are dropped and counted.
   */
  write(lines: readonly string[]): void;
  /** Resolves when what was queued has been written, or the sink is failing (it keeps retrying). */
  flush(): Promise<void>;
  /** Flushes what it can, then releases resources. Idempotent. */
  close(): Promise<void>;
  stats(): SinkStats;
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

/**
 * A FIFO of lines bounded in bytes: pushing beyond the bound drops the oldest lines.
 * Array with a moving head, compacted now and then, so shifting is O(1) amortised.
 */
export class LineQueue {
  #lines: string[] = [];
  #sizes: number[] = [];
  #head = 0;
  #bytes = 0;
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get length(): number {
    return this.#lines.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Adds a line (size in bytes incl. newline); returns how many old lines were dropped. */
  push(line: string, size: number): number {
    let dropped = 0;
    while (this.#bytes + size > this.maxBytes && this.length > 0) {
      this.#bytes -= this.#sizes[this.#head]!;
      this.#head++;
      dropped++;
    }
    if (size > this.maxBytes) return dropped + 1; // never fits
    this.#lines.push(line);
    this.#sizes.push(size);
    this.#bytes += size;
    this.#compact();
    return dropped;
  }

  peekSize(i = 0): number {
    return this.#sizes[this.#head + i]!;
  }

  peek(i = 0): string {
    return this.#lines[this.#head + i]!;
  }

  /** Removes the first n lines. */
  drop(n: number): void {
    for (let i = 0; i < n; i++) this.#bytes -= this.#sizes[this.#head + i]!;
    this.#head += n;
    this.#compact();
  }

  clear(): number {
    const n = this.length;
    this.#lines = [];
    this.#sizes = [];
    this.#head = 0;
    this.#bytes = 0;
    return n;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#lines.length) {
      this.#lines = this.#lines.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** Writes every line to every sink. */
export class FanoutSink implements Sink {
  readonly name = 'fanout';
  readonly #sinks: readonly Sink[];
  constructor(sinks: readonly Sink[]) {
    this.#sinks = sinks;
  }
  write(lines: readonly string[]): void {
    for (const s of this.#sinks) s.write(lines);
  }
  async flush(): Promise<void> {
    await Promise.all(this.#sinks.map((s) => s.flush()));
  }
  async close(): Promise<void> {
    await Promise.all(this.#sinks.map((s) => s.close()));
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
