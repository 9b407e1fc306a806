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
import { loadNative, type NativeModule } from '../datapath/native.ts';
import { BufferPool } from './buffer-pool.ts';
import { entryRoom, JsonMsgpack } from './json-msgpack.ts';
import { errorCode } from './sink.ts';
import {
  fatal,
  ok,
  retryable,
  type SendResult,
  type ShipBatch,
  type Transport,
  tlsReason,
} from './transport.ts';

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
/** The retry reason when the handshake fails: it names the settings to check. */
export const FORWARD_AUTH_REFUSED =
  'auth refused (FluentForwardSharedKey, FluentForwardUsername/FluentForwardPassword)';

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

/**
 * The addon's transcoder (addon/src/json_msgpack.cc: the same bytes as JsonMsgpack, at
 * ~2 µs a ~1 KB line instead of 4-6 µs, BENCHMARKS.md), or null where the addon is not
 * built (a checkout without scripts/setup.sh): then the TypeScript one does the work.
 */
const nativeEntries: NativeModule['forwardEntries'] | null = (() => {
  try {
    return loadNative().forwardEntries ?? null;
  } catch {
    return null;
  }
})();
/** [next line, out's length, entries, declined line's end], filled by the addon. */
const nativeState = new Float64Array(4);

/** Which transcoder encodeEntries uses: the addon's when it is built (tests pick each). */
export type Transcoder = 'native' | 'js';
export const defaultTranscoder: Transcoder = nativeEntries !== null ? 'native' : 'js';

/** One per process (encoding is synchronous): it writes into the buffer each call gives it. */
const transcoder = new JsonMsgpack();
/** The transcoder's own buffer, for calls that pass none. */
let scratch = transcoder.buffer;

/**
 * The PackedForward entries of a batch's lines, `[time, record]` each; throws on a line
 * that is not JSON. The lines are transcoded from their bytes (json-msgpack.ts: no JS
 * object per record); a line the transcoder declines goes through JSON.parse and
 * msgpackr, which produce the same bytes (and JSON.parse's error for bad JSON).
 * `entries` is a view of `out` (or of a larger buffer when it did not fit); without
 * `out`, of a buffer of this module's, valid until the next call.
 */
export function encodeEntries(
  data: Buffer,
  nowSec = Math.floor(Date.now() / 1000),
  out?: Buffer,
  using: Transcoder = defaultTranscoder,
): { entries: Buffer; size: number } {
  const tc = transcoder;
  tc.reset(out ?? scratch);
  let size = 0;
  let start = 0;
  const fallback = (end: number) => {
    const rec = JSON.parse(data.toString('utf8', start, end)) as Record<string, unknown> | null;
    const t = rec?.end_time;
    tc.append(packr.pack([Number.isSafeInteger(t) ? t : nowSec, rec]));
    size++;
  };
  if (using === 'native') {
    if (nativeEntries === null) throw new Error("the addon's Forward transcoder is not built");
    const st = nativeState;
    while (start < data.length) {
      const status = nativeEntries(data, start, tc.buffer, tc.length, nowSec, st);
      tc.setLength(st[1]!);
      size += st[2]!;
      start = st[0]!;
      if (status === 0) break;
      if (status === 1) {
        fallback(st[3]!);
        start = st[3]! + 1;
      } else {
        // No room for the line at `start`: grow by the bound the addon checked against.
        const end = data.indexOf(0x0a, start);
        tc.reserve(entryRoom((end < 0 ? data.length : end) - start));
      }
    }
  } else {
    while (start < data.length) {
      let end = data.indexOf(0x0a, start);
      if (end < 0) end = data.length;
      if (end > start) {
        if (tc.entry(data, start, end, nowSec)) size++;
        else fallback(end);
      }
      start = end + 1;
    }
  }
  const entries = tc.output();
  if (out === undefined) scratch = tc.buffer;
  tc.reset(scratch); // the transcoder keeps no hold on `out`
  return { entries, size };
}

/**
 * The head of a PackedForward message, `[tag, entries, option]`, up to the entries'
 * bytes: fixarray 3, the tag, and the entries' bin header (the smallest, as msgpackr
 * writes it). The entries and the packed option map follow it on the wire, so the
 * megabyte of entries is never copied into one message buffer.
 */
export function messageHead(tag: string, entriesBytes: number): Buffer {
  const t = packr.pack(tag);
  const bin = entriesBytes < 0x100 ? 2 : entriesBytes < 0x10000 ? 3 : 5;
  const h = Buffer.allocUnsafe(1 + t.length + bin);
  h[0] = 0x93;
  t.copy(h, 1);
  const o = 1 + t.length;
  if (bin === 2) {
    h[o] = 0xc4;
    h[o + 1] = entriesBytes;
  } else if (bin === 3) {
    h[o] = 0xc5;
    h.writeUInt16BE(entriesBytes, o + 1);
  } else {
    h[o] = 0xc6;
    h.writeUInt32BE(entriesBytes, o + 1);
  }
  return h;
}

/**
 * Buffers the entries are transcoded into: each is held until the socket has written
 * it (pipelined batches are on the wire at once), then used again (buffer-pool.ts). A
 * batch's msgpack is a little smaller than its JSON: 1 MiB batches fit with room.
 */
const entryBuffers = new BufferPool((1 << 20) + (256 << 10), 8);

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

  /**
   * Sends a message (its parts back to back) and resolves on its ack, or retryable on
   * timeout or a lost connection; `written` runs once the socket is done with the parts.
   */
  request(chunk: string, parts: Buffer[], deadline: number, written: () => void): Promise<SendResult> {
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
      this.socket.cork();
      for (let i = 0; i < parts.length - 1; i++) this.socket.write(parts[i]!);
      this.socket.write(parts[parts.length - 1]!, () => written());
      this.socket.uncork();
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
    let out: Buffer | null = entryBuffers.take();
    const giveBack = () => {
      if (out !== null) entryBuffers.release(out);
      out = null;
    };
    try {
      ({ entries, size } = encodeEntries(batch.data, undefined, out));
    } catch (err) {
      giveBack();
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
      giveBack();
    }
    const parts = [messageHead(this.#tag, entries.length), entries, packr.pack(option)];
    let conn = this.#conn;
    if (conn === null || conn.closed) {
      conn = new Connection(this.#o, deadline);
      this.#conn = conn;
    }
    try {
      await conn.ready;
    } catch (err) {
      giveBack();
      if (this.#conn === conn) this.#conn = null;
      const code = errorCode(err);
      if (code === 'EAUTH') return retryable(FORWARD_AUTH_REFUSED);
      return retryable(tlsReason(code, 'FluentForwardTlsCa') ?? code);
    }
    return conn.request(chunk, parts, deadline, giveBack);
  }

  async close(): Promise<void> {
    this.#conn?.fail('closed');
    this.#conn = null;
  }
}
