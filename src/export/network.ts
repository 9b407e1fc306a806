// A sink that ships flow log lines off the node: the lines are cut into batches (at most
// `maxBatchLines` lines and `maxBatchBytes` bytes), numbered and spooled (spool.ts), and
// sent by a transport (Forward, NATS, OTLP) through the one retry loop (transport.ts),
// up to `window` batches in flight. A batch leaves the spool only when the remote has
// acknowledged it (at-least-once), when the remote refuses it for good ('fatal'), or when
// the spool's bounds drop it (counted by reason). write() never blocks: the flush only
// waits (flush()) for its batches to be on disk, never for the network.

import { LINE_BATCH_BYTES, LINE_BATCH_LINES, type LineBatch } from './batch.ts';
import { BufferPool } from './buffer-pool.ts';
import { newSinkStats, type Sink, type SinkLogger, type SinkStats, silentSinkLogger } from './sink.ts';
import type { Spool, SpoolEntry, SpoolStats } from './spool.ts';
import { Retrier, type RetryOptions, type ShipBatch, type Transport } from './transport.ts';

export interface NetworkSinkOptions {
  readonly name: string;
  readonly transport: Transport;
  readonly spool: Spool;
  readonly node: string;
  readonly retry?: RetryOptions;
  /** Lines per batch; default LINE_BATCH_LINES (batch.ts). */
  readonly maxBatchLines?: number;
  /** Bytes per batch (at least one line); default LINE_BATCH_BYTES (1 MiB). */
  readonly maxBatchBytes?: number;
  /** Batches in flight at once; default 4. */
  readonly window?: number;
  /** close() waits this long for the backlog to be acknowledged; the rest stays spooled. Default 5 s. */
  readonly closeTimeoutMs?: number;
  readonly logger?: SinkLogger;
}

/** What a network sink reports beyond SinkStats (metrics per sink). */
export interface ShipStats {
  queuedBatches: number;
  inFlightBatches: number;
  inFlightLines: number;
  ackedLines: number;
  ackedBatches: number;
  /** Attempts that failed and were retried. */
  retries: number;
  /** Batches the remote already had (a replay the duplicate window absorbed). */
  duplicates: number;
  /** Lines dropped, by reason (spool bounds, 'fatal', 'rejected', 'corrupt', an error code). */
  dropped: Record<string, number>;
  spool: SpoolStats;
  /** Epoch ms of the last acknowledged batch; 0 = none yet. */
  lastSuccessMs: number;
  /** Aggregation level stamped on new batches. */
  level: number;
}

export class NetworkSink implements Sink {
  readonly name: string;
  readonly #transport: Transport;
  readonly #spool: Spool;
  readonly #node: string;
  readonly #retrier: Retrier;
  readonly #maxLines: number;
  readonly #maxBytes: number;
  readonly #window: number;
  readonly #closeTimeoutMs: number;
  readonly #log: SinkLogger;
  /** Buffers for the spool's copies of full batches (buffer-pool.ts). */
  readonly #pool: BufferPool;
  readonly #stats: SinkStats = newSinkStats();
  readonly #ship = {
    inFlightBatches: 0,
    inFlightLines: 0,
    ackedLines: 0,
    ackedBatches: 0,
    retries: 0,
    duplicates: 0,
    lastSuccessMs: 0,
    /** Lines the remote refused (fatal, or rejected in a partial success), by reason. */
    refused: {} as Record<string, number>,
  };
  /** Batches now between a failed attempt and the next (no new batch starts meanwhile). */
  #retrying = 0;
  #closing = false;
  #closed = false;
  #waiters: (() => void)[] = [];
  /** Aggregation level stamped on new batches (dynamic aggregation sets it). */
  level = 0;

  constructor(o: NetworkSinkOptions) {
    this.name = o.name;
    this.#transport = o.transport;
    this.#spool = o.spool;
    this.#node = o.node;
    this.#retrier = new Retrier(o.retry);
    this.#maxLines = Math.max(1, o.maxBatchLines ?? LINE_BATCH_LINES);
    this.#maxBytes = Math.max(1, o.maxBatchBytes ?? LINE_BATCH_BYTES);
    this.#window = Math.max(1, o.window ?? 4);
    this.#closeTimeoutMs = o.closeTimeoutMs ?? 5000;
    this.#log = o.logger ?? silentSinkLogger;
    // Enough free buffers for the batches in flight and the next ones being written.
    this.#pool = new BufferPool(this.#maxBytes, this.#window + 2);
    this.#spool.onReady = () => this.#pump();
    // What a previous run left unacknowledged goes first.
    const s = this.#spool.stats();
    if (s.recoveredBatches > 0)
      this.#log.info(
        { sink: this.name, batches: s.recoveredBatches, lines: s.recoveredLines },
        'replaying spooled flow log batches',
      );
    queueMicrotask(() => this.#pump());
  }

  write(batch: LineBatch): void {
    this.#stats.acceptedLines += batch.count;
    if (this.#closing) {
      this.#stats.droppedLines += batch.count;
      this.#ship.refused.closed = (this.#ship.refused.closed ?? 0) + batch.count;
      return;
    }
    for (const [start, end, n] of this.#cut(batch)) {
      // A copy: the spool owns it, the line batch's buffer goes back to the builder. A
      // batch of at least half the pool's size goes into a pooled buffer; a smaller one
      // gets its own of its size, so a backlog of small batches does not hold a megabyte each.
      const bytes = end - start;
      if (bytes * 2 >= this.#pool.size && bytes <= this.#pool.size) {
        const buf = this.#pool.take();
        batch.buf.copy(buf, 0, start, end);
        this.#spool.append(buf.subarray(0, bytes), n, this.level, this.#pool);
      } else this.#spool.append(Buffer.from(batch.buf.subarray(start, end)), n, this.level);
    }
  }

  /** [start, end, lines] runs of the batch within the per-batch bounds. */
  *#cut(b: LineBatch): Generator<[number, number, number]> {
    let i = 0;
    while (i < b.count) {
      const start = b.start(i);
      let j = i + 1;
      while (j < b.count && j - i < this.#maxLines && b.ends[j]! - start <= this.#maxBytes) j++;
      yield [start, b.ends[j - 1]!, j - i];
      i = j;
    }
  }

  #pump(): void {
    while (!this.#closed && this.#retrying === 0 && this.#ship.inFlightBatches < this.#window) {
      const e = this.#spool.nextToSend();
      if (e === null) break;
      e.sending = true;
      this.#ship.inFlightBatches++;
      this.#ship.inFlightLines += e.count;
      void this.#deliver(e).finally(() => {
        this.#spool.sent(e);
        this.#ship.inFlightBatches--;
        this.#ship.inFlightLines -= e.count;
        this.#pump();
        this.#wake();
      });
    }
  }

  async #deliver(e: SpoolEntry): Promise<void> {
    const data = await this.#spool.load(e);
    if (data === null) {
      this.#spool.finish(e, 'corrupt');
      return;
    }
    const batch: ShipBatch = {
      seq: e.seq,
      bootId: e.bootId,
      node: this.#node,
      level: e.level,
      count: e.count,
      data,
    };
    let failing = false;
    const r = await this.#retrier.run((deadline) => this.#transport.send(batch, deadline), {
      onRetry: (reason, attempt, delayMs) => {
        this.#ship.retries++;
        this.#stats.errors[reason] = (this.#stats.errors[reason] ?? 0) + 1;
        if (!failing) {
          failing = true;
          this.#retrying++;
        }
        if (this.#stats.healthy) {
          this.#stats.healthy = false;
          this.#log.warn(
            {
              sink: this.name,
              reason,
              seq: e.seq,
              attempt,
              delayMs,
              backlogLines: this.#spool.stats().backlogLines,
            },
            'cannot ship flow logs; retrying, the spool keeps them',
          );
        }
        this.#wake(); // flush() waiters: a failing sink does not hold the flush
      },
    });
    if (failing) this.#retrying--;
    if (r.status === 'ok') {
      this.#ship.ackedBatches++;
      this.#ship.lastSuccessMs = Date.now();
      if (r.duplicate) this.#ship.duplicates++;
      const rejected = Math.min(e.count, r.rejected ?? 0);
      if (rejected > 0) {
        this.#refuse('rejected', rejected);
        this.#log.warn(
          { sink: this.name, seq: e.seq, rejected, reason: r.reason },
          'remote rejected flow log records',
        );
      }
      this.#ship.ackedLines += e.count - rejected;
      this.#stats.writtenLines += e.count - rejected;
      this.#stats.writtenBytes += e.bytes;
      this.#spool.finish(e);
      if (!this.#stats.healthy) {
        this.#stats.healthy = true;
        this.#log.info({ sink: this.name }, 'shipping flow logs again');
      }
    } else if (r.status === 'fatal') {
      this.#refuse('fatal', e.count);
      this.#spool.finish(e);
      this.#log.error(
        { sink: this.name, seq: e.seq, lines: e.count, reason: r.reason },
        'remote refused a batch; dropped',
      );
    } else {
      // Stopped while failing: it stays spooled for the next run (sent() clears sending).
    }
  }

  #refuse(reason: string, n: number): void {
    this.#ship.refused[reason] = (this.#ship.refused[reason] ?? 0) + n;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves when everything written so far is in the spool (on disk); delivery goes on. */
  async flush(): Promise<void> {
    await this.#spool.written();
  }

  /** Resolves when nothing is unacknowledged, or the sink is failing (retrying), or closed. */
  delivered(): Promise<void> {
    const done = () =>
      this.#closed ||
      this.#retrying > 0 ||
      (this.#spool.stats().batches === 0 && this.#ship.inFlightBatches === 0);
    if (done()) return Promise.resolve();
    return new Promise((res) => {
      const check = () => (done() ? res() : this.#waiters.push(check));
      this.#waiters.push(check);
    });
  }

  /** Never holds a LineBatch: it copies what it takes. */
  idle(): boolean {
    return true;
  }

  /** Waits up to closeTimeoutMs for the backlog, then stops; what is unacknowledged stays spooled. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await this.flush();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.delivered(),
      new Promise<void>((res) => {
        timer = setTimeout(res, this.#closeTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.#closed = true;
    this.#retrier.stop();
    while (this.#ship.inFlightBatches > 0) await new Promise<void>((res) => this.#waiters.push(res));
    await this.#transport.close();
    await this.#spool.close();
    this.#wake();
  }

  stats(): SinkStats {
    const sp = this.#spool.stats();
    const dropped = Object.values(sp.dropped).reduce((a, b) => a + b, 0);
    const refused = Object.values(this.#ship.refused).reduce((a, b) => a + b, 0);
    this.#stats.droppedLines = dropped + refused;
    this.#stats.queuedLines = sp.backlogLines;
    this.#stats.queuedBytes = sp.backlogBytes;
    return { ...this.#stats, errors: { ...this.#stats.errors } };
  }

  shipStats(): ShipStats {
    const sp = this.#spool.stats();
    const dropped: Record<string, number> = { ...sp.dropped };
    for (const [k, v] of Object.entries(this.#ship.refused)) dropped[k] = (dropped[k] ?? 0) + v;
    return {
      queuedBatches: sp.batches,
      inFlightBatches: this.#ship.inFlightBatches,
      inFlightLines: this.#ship.inFlightLines,
      ackedLines: this.#ship.ackedLines,
      ackedBatches: this.#ship.ackedBatches,
      retries: this.#ship.retries,
      duplicates: this.#ship.duplicates,
      dropped,
      spool: sp,
      lastSuccessMs: this.#ship.lastSuccessMs,
      level: this.level,
    };
  }
}
