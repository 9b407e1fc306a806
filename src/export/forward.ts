// Fluent Forward (protocol v1) to Fluentd / Fluent Bit `in_forward`.
//
// One batch is one PackedForward message, `[tag, entries, {size, chunk}]` (with
// `compressed: 'gzip'`, CompressedPackedForward): `entries` is the concatenation of one
// `[time, record]` msgpack array per flow log line, the record being the line's JSON
// object as a map and the time its `end_time` (integer seconds: Calico's records carry
// no finer time). The `chunk` option asks the server for `{ack: chunk}`; a batch counts
// as delivered only then (at-least-once). No ack by the deadline: the connection is
// dropped (the server may be wedged) and the batch is retried on a new one.
//
// With a shared key the server opens with HELO {nonce, auth, keepalive}; the client
// answers PING (hostname, salt, sha512 hex of salt+hostname+nonce+key, and user and
// sha512 hex of auth+user+password when the server asks for users) and checks PONG's
// digest of salt+server hostname+nonce+key, so a server without the key is refused.

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { gzipSync } from 'node:zlib';
import { Packr, UnpackrStream } from 'msgpackr';
import { JsonMsgpack } from './json-msgpack.ts';
import { errorCode } from './sink.ts';
import { fatal, ok, retryable, type SendResult, type ShipBatch, type Transport } from './transport.ts';

export interface ForwardOptions {
  readonly host: string;
  readonly port: number;
  /** Default 'flows', the tag Calico's Fluentd gives flows.log. */
  readonly tag?: string;
  /** TLS options (ca, servername, rejectUnauthorized, cert, key); null = plain TCP. */
  readonly tls?: tls.ConnectionOptions | null;
  readonly sharedKey?: string | null;
  readonly username?: string | null;
  readonly password?: string | null;
  /** Our hostname in PING (the node name). */
  readonly selfHostname?: string;
  /** Send CompressedPackedForward (gzip). */
  readonly compress?: boolean;
}

export const DEFAULT_FORWARD_TAG = 'flows';

const packr = new Packr({ useRecords: false });

function sha512hex(...parts: (string | Buffer)[]): string {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** A stable chunk id per batch (incarnation, sequence): a resent batch carries the same one. */
export function chunkId(b: ShipBatch): string {
  const id = Buffer.alloc(16);
  Buffer.from(b.bootId.replace(/-/g, '').padEnd(16, '0').slice(0, 16), 'hex').copy(id, 0);
  id.writeBigUInt64BE(BigInt(b.seq), 8);
  return id.toString('base64');
}

/** One per process: its output buffer is reused batch after batch (send() copies it out). */
const transcoder = new JsonMsgpack();

/**
 * The PackedForward entries of a batch's lines, `[time, record]` each; throws on a line
 * that is not JSON. The lines are transcoded from their bytes (json-msgpack.ts: no JS
 * object per record); a line the transcoder declines goes through JSON.parse and
 * msgpackr, which produce the same bytes (and JSON.parse's error for bad JSON).
 * `entries` is a view of the transcoder's buffer: valid until the next call.
 */
export function encodeEntries(
  data: Buffer,
  nowSec = Math.floor(Date.now() / 1000),
): { entries: Buffer; size: number } {
  const tc = transcoder;
  tc.reset();
  let size = 0;
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0x0a, start);
    if (end < 0) end = data.length;
    if (end > start) {
      if (!tc.entry(data, start, end, nowSec)) {
        const rec = JSON.parse(data.toString('utf8', start, end)) as Record<string, unknown> | null;
        const t = rec?.end_time;
        tc.append(packr.pack([Number.isSafeInteger(t) ? t : nowSec, rec]));
      }
      size++;
    }
    start = end + 1;
  }
  return { entries: tc.output(), size };
}

interface Pending {
  resolve(r: SendResult): void;
  timer: NodeJS.Timeout;
}

/** One connection: handshake, then acks matched to their chunks. */
class Connection {
  readonly socket: net.Socket;
  readonly ready: Promise<void>;
  readonly #pending = new Map<string, Pending>();
  #closed = false;
  #onHelo: ((m: unknown[]) => void) | null = null;
  #onPong: ((m: unknown[]) => void) | null = null;

  constructor(o: ForwardOptions, deadline: number) {
    this.socket = o.tls
      ? tls.connect({ host: o.host, port: o.port, servername: o.host, ...o.tls })
      : net.connect({ host: o.host, port: o.port });
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, 30_000);
    const decoder = new UnpackrStream({ useRecords: false, mapsAsObjects: true });
    this.socket.pipe(decoder);
    decoder.on('data', (m: unknown) => this.#message(m));
    decoder.on('error', (err: Error) => this.fail(`bad reply: ${err.message}`));
    const closed = new Promise<never>((_, reject) => {
      this.socket.once('close', () => {
        this.fail('connection closed');
        reject(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' }));
      });
      this.socket.on('error', (err) => {
        this.fail(errorCode(err));
        reject(err);
      });
    });
    closed.catch(() => {});
    const connected = new Promise<void>((res) =>
      this.socket.once(o.tls ? 'secureConnect' : 'connect', () => res()),
    );
    const timeout = new Promise<never>((_, reject) => {
      const t = setTimeout(
        () => reject(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })),
        Math.max(1, deadline - Date.now()),
      );
      connected.finally(() => clearTimeout(t)).catch(() => {});
    });
    this.ready = Promise.race([
      connected.then(() => (o.sharedKey ? this.#handshake(o, deadline) : undefined)),
      closed,
      timeout,
    ]);
    this.ready.catch(() => this.socket.destroy());
  }

  async #handshake(o: ForwardOptions, deadline: number): Promise<void> {
    const wait = (set: (f: (m: unknown[]) => void) => void, what: string) =>
      new Promise<unknown[]>((res, reject) => {
        const t = setTimeout(
          () => reject(Object.assign(new Error(`no ${what}`), { code: 'ETIMEDOUT' })),
          Math.max(1, deadline - Date.now()),
        );
        set((m) => {
          clearTimeout(t);
          res(m);
        });
      });
    const helo = await wait((f) => (this.#onHelo = f), 'HELO');
    const opts = (helo[1] ?? {}) as { nonce?: Buffer | string; auth?: Buffer | string };
    const nonce = opts.nonce ?? '';
    const auth = opts.auth ?? '';
    const salt = randomBytes(16).toString('hex');
    const host = o.selfHostname ?? 'flowlogd';
    const user = o.username ?? '';
    const password = auth.length > 0 ? sha512hex(auth, user, o.password ?? '') : '';
    const ping = ['PING', host, salt, sha512hex(salt, host, nonce, o.sharedKey!), user, password];
    this.socket.write(packr.pack(ping));
    const pong = await wait((f) => (this.#onPong = f), 'PONG');
    if (pong[1] !== true)
      throw Object.assign(new Error(`authentication refused: ${String(pong[2])}`), { code: 'EAUTH' });
    const serverHost = String(pong[3] ?? '');
    if (pong[4] !== sha512hex(salt, serverHost, nonce, o.sharedKey!))
      throw Object.assign(new Error('server does not know the shared key'), { code: 'EAUTH' });
  }

  #message(m: unknown): void {
    if (Array.isArray(m) && m[0] === 'HELO') this.#onHelo?.(m);
    else if (Array.isArray(m) && m[0] === 'PONG') this.#onPong?.(m);
    else if (m !== null && typeof m === 'object' && 'ack' in m) {
      const chunk = String((m as { ack: unknown }).ack);
      const p = this.#pending.get(chunk);
      if (p === undefined) return; // an ack for a batch given up on (timed out)
      this.#pending.delete(chunk);
      clearTimeout(p.timer);
      p.resolve(ok);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a message and resolves on its ack, or retryable on timeout or a lost connection. */
  request(chunk: string, msg: Buffer, deadline: number): Promise<SendResult> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.#pending.delete(chunk);
          resolve(retryable('ack timeout'));
          // A server that does not ack in time may never: start over on a new connection.
          this.fail('ack timeout');
        },
        Math.max(1, deadline - Date.now()),
      );
      this.#pending.set(chunk, { resolve, timer });
      this.socket.write(msg);
    });
  }

  fail(reason: string): void {
    if (!this.#closed) {
      this.#closed = true;
      this.socket.destroy();
    }
    for (const [chunk, p] of this.#pending) {
      this.#pending.delete(chunk);
      clearTimeout(p.timer);
      p.resolve(retryable(reason));
    }
  }
}

export class ForwardTransport implements Transport {
  readonly #o: ForwardOptions;
  readonly #tag: string;
  #conn: Connection | null = null;

  constructor(o: ForwardOptions) {
    this.#o = o;
    this.#tag = o.tag ?? DEFAULT_FORWARD_TAG;
  }

  async send(batch: ShipBatch, deadline: number): Promise<SendResult> {
    let entries: Buffer;
    let size: number;
    try {
      ({ entries, size } = encodeEntries(batch.data));
    } catch (err) {
      return fatal(`line is not a JSON object: ${(err as Error).message}`);
    }
    const chunk = chunkId(batch);
    // Beside the protocol's keys, the batch's sequence and aggregation level: Fluentd and
    // Fluent Bit ignore option keys they do not know; a Forward consumer can read them.
    const option: Record<string, unknown> = {
      size,
      chunk,
      flowlogd_seq: batch.seq,
      flowlogd_level: batch.level,
      flowlogd_node: batch.node,
      flowlogd_boot_id: batch.bootId,
    };
    if (this.#o.compress) {
      entries = gzipSync(entries, { level: 1 });
      option.compressed = 'gzip';
    }
    const msg = packr.pack([this.#tag, entries, option]);
    let conn = this.#conn;
    if (conn === null || conn.closed) {
      conn = new Connection(this.#o, deadline);
      this.#conn = conn;
    }
    try {
      await conn.ready;
    } catch (err) {
      if (this.#conn === conn) this.#conn = null;
      const code = errorCode(err);
      return code === 'EAUTH' ? retryable('auth refused') : retryable(code);
    }
    return conn.request(chunk, msg, deadline);
  }

  async close(): Promise<void> {
    this.#conn?.fail('closed');
    this.#conn = null;
  }
}
