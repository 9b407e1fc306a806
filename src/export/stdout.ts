// JSON Lines to stdout (or any Writable). Backpressure is honoured with a queue bounded in
// bytes that drops its oldest lines (counted); a broken pipe is counted and the sink
// stops writing instead of crashing the daemon.

import type { Writable } from 'node:stream';
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

export interface StreamSinkOptions {
  readonly stream?: Writable;
  readonly maxQueueBytes?: number;
  readonly logger?: SinkLogger;
}

export class StreamSink implements Sink {
  readonly name: string;
  readonly #stream: Writable;
  readonly #log: SinkLogger;
  readonly #queue: BatchQueue;
  readonly #stats: SinkStats = newSinkStats();
  #waiting = false;
  /** Writes the stream has accepted but not finished: it holds their batch's bytes until then. */
  #inFlight = 0;
  /** Lines and bytes of each write in flight, oldest first (a stream calls back in order). */
  readonly #inFlightRuns: { lines: number; bytes: number }[] = [];
  #broken = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  constructor(opts: StreamSinkOptions = {}, name = 'stdout') {
    this.name = name;
    this.#stream = opts.stream ?? process.stdout;
    this.#log = opts.logger ?? silentSinkLogger;
    this.#queue = new BatchQueue(opts.maxQueueBytes ?? 16 << 20);
    this.#stream.on('error', (err) => {
      const code = errorCode(err);
      this.#stats.errors[code] = (this.#stats.errors[code] ?? 0) + 1;
      if (!this.#broken)
        this.#log.error({ err, code, sink: this.name }, 'flow log stream failed; dropping its lines');
      this.#broken = true;
      this.#stats.healthy = false;
      const n = this.#queue.clear();
      this.#stats.droppedLines += n;
      this.#wake();
    });
  }

  write(batch: LineBatch): void {
    this.#stats.acceptedLines += batch.count;
    if (this.#broken || this.#closed) {
      this.#stats.droppedLines += batch.count;
      return;
    }
    const dropped = this.#queue.push(batch);
    if (dropped > 0) {
      this.#stats.droppedLines += dropped;
      this.#log.warn({ sink: this.name, dropped }, 'flow log lines dropped: output too slow');
    }
    if (!this.#waiting) this.#pump();
  }

  #pump(): void {
    const q = this.#queue;
    while (q.length > 0 && !this.#broken) {
      const run = q.headRun(1 << 20)!;
      q.drop(run.lines);
      // A slice of the batch: the stream holds it, not a copy, until written.
      this.#inFlight++;
      this.#inFlightRuns.push({ lines: run.lines, bytes: run.end - run.start });
      const ok = this.#stream.write(run.batch.buf.subarray(run.start, run.end), this.#written);
      this.#stats.writtenLines += run.lines;
      this.#stats.writtenBytes += run.end - run.start;
      if (!ok) {
        this.#waiting = true;
        this.#stream.once('drain', () => {
          this.#waiting = false;
          this.#pump();
        });
        return;
      }
    }
    this.#wake();
  }

  readonly #written = (): void => {
    this.#inFlight--;
    this.#inFlightRuns.shift();
    this.#wake();
  };

  abandon(): void {
    this.#closed = true;
    let held = this.#queue.clear();
    // Handed to the stream but never written out (a stalled pipe): not written after all.
    for (const r of this.#inFlightRuns.splice(0)) {
      held += r.lines;
      this.#stats.writtenLines -= r.lines;
      this.#stats.writtenBytes -= r.bytes;
    }
    if (held > 0) {
      this.#stats.droppedLines += held;
      this.#log.warn(
        { sink: this.name, dropped: held },
        'flow log stream still stalled at exit: its lines dropped',
      );
    }
  }

  /** Wakes flush() waiters once nothing is queued, waiting or in flight (or the stream broke). */
  #wake(): void {
    if (!this.#broken && !this.idle()) return;
    const w = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const f of w) f();
  }

  idle(): boolean {
    return !this.#waiting && this.#queue.length === 0 && this.#inFlight === 0;
  }

  flush(): Promise<void> {
    if (this.#broken || this.idle()) return Promise.resolve();
    return new Promise((res) => this.#idleWaiters.push(res));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
  }

  stats(): SinkStats {
    this.#stats.queuedLines = this.#queue.length;
    this.#stats.queuedBytes = this.#queue.bytes;
    return { ...this.#stats, errors: { ...this.#stats.errors } };
  }
}
