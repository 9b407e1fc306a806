// What every network sink (Fluent Forward, NATS JetStream, OTLP) has in common: a
// transport that sends one batch and says how it went, and ONE retry loop around it
// (timeouts, jittered exponential backoff, a server's Retry-After), as OpenTelemetry's
// exporters do. A transport never retries and never sleeps on its own: it answers `ok`
// (the remote acknowledged the batch), `retryable` (try again later, the batch is kept)
// or `fatal` (this batch can never be accepted: dropped and counted).

/** One spooled batch as a transport sends it. */
export interface ShipBatch {
  /** Per-node sequence number, consecutive, persisted across restarts (a consumer sees gaps). */
  readonly seq: number;
  /** Identifies the sequence's incarnation (a new spool starts a new one): with node and seq, a unique message id. */
  readonly bootId: string;
  readonly node: string;
  /** Aggregation level in force when the lines were built (0-3). */
  readonly level: number;
  /** Lines in `data`. */
  readonly count: number;
  /** JSON Lines, each ending in '\n': the bytes flows.log gets. */
  readonly data: Buffer;
}

export type SendResult =
  | {
      readonly status: 'ok';
      readonly duplicate?: boolean;
      readonly rejected?: number;
      readonly reason?: string;
    }
  | { readonly status: 'retryable'; readonly reason: string; readonly retryAfterMs?: number }
  | { readonly status: 'fatal'; readonly reason: string };

export interface Transport {
  /** Sends one batch; resolves (never rejects) by `deadline` (epoch ms) or soon after it. */
  send(batch: ShipBatch, deadline: number): Promise<SendResult>;
  close(): Promise<void>;
}

export interface RetryOptions {
  /** Per attempt: the deadline handed to send(), and enforced here too. Default 10 s. */
  readonly timeoutMs?: number;
  /** First backoff; default 250 ms. */
  readonly minBackoffMs?: number;
  /** Backoff ceiling (also caps a server's Retry-After); default 30 s. */
  readonly maxBackoffMs?: number;
  /** Randomizes each delay by ±jitter (0.2 = ±20%) so many nodes do not retry in step. */
  readonly jitter?: number;
}

export const ok: SendResult = { status: 'ok' };

export function retryable(reason: string, retryAfterMs?: number): SendResult {
  return retryAfterMs === undefined
    ? { status: 'retryable', reason }
    : { status: 'retryable', reason, retryAfterMs };
}

export function fatal(reason: string): SendResult {
  return { status: 'fatal', reason };
}

/** The delay before retry number `attempt` (1-based): min·2^(attempt-1), capped, jittered. */
export function backoffMs(attempt: number, o: Required<RetryOptions>, random = Math.random): number {
  const base = Math.min(o.maxBackoffMs, o.minBackoffMs * 2 ** Math.min(30, attempt - 1));
  return Math.max(0, Math.round(base * (1 - o.jitter + 2 * o.jitter * random())));
}

export interface RetryHooks {
  /** Each failed attempt that will be retried, with its reason. */
  onRetry?(reason: string, attempt: number, delayMs: number): void;
}

/**
 * The retry loop: calls send until it is ok or fatal, or until stop() (then the last
 * result, retryable, is returned and the batch stays spooled). An attempt that does not
 * settle within the timeout counts as retryable ('timeout'); a transport that throws
 * is a bug, reported as retryable so nothing is lost.
 */
export class Retrier {
  readonly options: Required<RetryOptions>;
  #stopped = false;
  readonly #sleepers = new Set<() => void>();
  readonly #random: () => number;

  constructor(o: RetryOptions = {}, random = Math.random) {
    this.options = {
      timeoutMs: o.timeoutMs ?? 10_000,
      minBackoffMs: o.minBackoffMs ?? 250,
      maxBackoffMs: o.maxBackoffMs ?? 30_000,
      jitter: o.jitter ?? 0.2,
    };
    this.#random = random;
  }

  async run(send: (deadline: number) => Promise<SendResult>, hooks: RetryHooks = {}): Promise<SendResult> {
    for (let attempt = 1; ; attempt++) {
      const r = await this.#attempt(send);
      if (r.status !== 'retryable' || this.#stopped) return r;
      const delay = Math.min(
        this.options.maxBackoffMs,
        r.retryAfterMs ?? backoffMs(attempt, this.options, this.#random),
      );
      hooks.onRetry?.(r.reason, attempt, delay);
      await this.#sleep(delay);
      if (this.#stopped) return r;
    }
  }

  async #attempt(send: (deadline: number) => Promise<SendResult>): Promise<SendResult> {
    const deadline = Date.now() + this.options.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    // A little past the deadline: a transport that honours it answers with its own reason.
    const timeout = new Promise<SendResult>((res) => {
      timer = setTimeout(() => res(retryable('timeout')), this.options.timeoutMs + 100);
    });
    try {
      const attempt = send(deadline).catch((err: unknown) =>
        retryable(`transport error: ${(err as Error)?.message ?? String(err)}`),
      );
      return await Promise.race([attempt, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const wake = () => {
        clearTimeout(t);
        this.#sleepers.delete(wake);
        res();
      };
      const t = setTimeout(wake, ms);
      this.#sleepers.add(wake);
    });
  }

  /** Ends every backoff now (a reconnect was seen, or shutdown): waiting batches retry at once. */
  wake(): void {
    for (const w of [...this.#sleepers]) w();
  }

  /** No more retries: run() returns after the attempt in progress. */
  stop(): void {
    this.#stopped = true;
    this.wake();
  }

  get stopped(): boolean {
    return this.#stopped;
  }
}

/** Retry-After: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | undefined | null, now = Date.now()): number | undefined {
  if (v === undefined || v === null || v.trim() === '') return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** Node's codes for a server certificate the client does not trust (or that names another host). */
const CERT_CODES =
  /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_\w+|ERR_TLS_CERT_ALTNAME_INVALID)$/;

/**
 * A retry reason that names the setting to fix: a certificate the client does not trust
 * (`setting` is the CA file's), a TLS handshake that failed (a plain-text server, a
 * protocol mismatch), or null when `code` is not a TLS error.
 */
export function tlsReason(code: string, setting: string): string | null {
  if (CERT_CODES.test(code)) return `tls ${code}: server certificate not trusted (${setting})`;
  if (code === 'EPROTO' || code.startsWith('ERR_SSL_')) return `tls ${code}: handshake failed (${setting})`;
  return null;
}
