// JSON Lines to stdout (or any Writable). Backpressure is honoured with a queue bounded in
// bytes that drops its oldest lines (counted); a broken pipe is counted and the sink
// stops writing instead of crashing the daemon.

import type { Writable } from 'node:stream';
import {
  errorCode,
  LineQueue,
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
  readonly #queue: LineQueue;
  readonly #stats: SinkStats = newSinkStats();
  #waiting = false;
  #broken = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  constructor(opts: StreamSinkOptions = {}, name = 'stdout') {
    this.name = name;
    this.#stream = opts.stream ?? process.stdout;
    this.#log = opts.logger ?? silentSinkLogger;
    this.#queue = new LineQueue(opts.maxQueueBytes ?? 16 << 20);
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

  write(lines: readonly string[]): void {
    this.#stats.acceptedLines += lines.length;
    if (this.#broken || this.#closed) {
      this.#stats.droppedLines += lines.length;
      return;
    }
    let dropped = 0;
    for (const l of lines) dropped += this.#queue.push(l, Buffer.byteLength(l) + 1);
    if (dropped > 0) {
      this.#stats.droppedLines += dropped;
      this.#log.warn({ sink: this.name, dropped }, 'flow log lines dropped: output too slow');
    }
    if (!this.#waiting) this.#pump();
  }

  #pump(): void {
    const q = this.#queue;
    while (q.length > 0 && !this.#broken) {
      let n = 0;
      let bytes = 0;
      while (n < q.length && bytes < 1 << 20) bytes += q.peekSize(n++);
      const parts: string[] = new Array(n);
      for (let i = 0; i < n; i++) parts[i] = q.peek(i);
      q.drop(n);
      const ok = this.#stream.write(`${parts.join('\n')}\n`);
      this.#stats.writtenLines += n;
      this.#stats.writtenBytes += bytes;
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

  #wake(): void {
    const w = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const f of w) f();
  }

  flush(): Promise<void> {
    if (this.#broken || (!this.#waiting && this.#queue.length === 0)) return Promise.resolve();
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
