// A Fluent Forward protocol v1 server for tests and benchmarks, written from the specification
// (fluent/fluentd wiki, "Forward Protocol Specification v1"): the four event modes
// (Message, Forward, PackedForward, CompressedPackedForward), `chunk` acks, and the
// HELO/PING/PONG shared-key and user handshake. Checked against a third-party client
// (python3-fluent-logger) in forward.test.ts before flowlogd is checked against it.

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { addExtension, Packr, unpackMultiple } from 'msgpackr';

/** EventTime (ext type 0: uint32 seconds, uint32 nanoseconds) as seconds with a fraction. */
addExtension({
  type: 0,
  unpack: (b: Buffer) => ({ eventTime: b.readUInt32BE(0) + b.readUInt32BE(4) / 1e9 }),
});

const packr = new Packr({ useRecords: false });
// A frame is a view of the connection's buffer, which the next read overwrites: what is
// kept (events, options) is decoded with its bin values copied; a benchmark that only
// counts keeps nothing and decodes without the copies.
const keeping = new Packr({ useRecords: false, copyBuffers: true });

// Bytes of the length field after the type byte, for the types that have one (bin, str,
// ext, array and map at 8, 16 and 32 bits), and the fixed body of the others.
const LENGTH_BYTES = new Map<number, number>([
  ...[0xc4, 0xd9, 0xc7].map((t) => [t, 1] as const), // bin 8, str 8, ext 8
  ...[0xc5, 0xda, 0xc8, 0xdc, 0xde].map((t) => [t, 2] as const), // … 16, array 16, map 16
  ...[0xc6, 0xdb, 0xc9, 0xdd, 0xdf].map((t) => [t, 4] as const), // … 32, array 32, map 32
]);
const FIXED_BODY = new Map<number, number>([
  ...[0xc0, 0xc2, 0xc3].map((t) => [t, 0] as const), // nil, false, true
  ...[0xcc, 0xd0].map((t) => [t, 1] as const), // uint 8, int 8
  ...[0xcd, 0xd1].map((t) => [t, 2] as const),
  ...[0xca, 0xce, 0xd2].map((t) => [t, 4] as const), // float 32, uint 32, int 32
  ...[0xcb, 0xcf, 0xd3].map((t) => [t, 8] as const),
  ...[0xd4, 0xd5, 0xd6, 0xd7, 0xd8].map((t, i) => [t, 1 + 2 ** i] as const), // fixext 1..16, type byte first
]);

/**
 * Walks MessagePack headers from `pos` with `todo` values left to pass, skipping each bin,
 * str or ext payload by its length, and stops when none is left, at a header not all
 * before `end` (to resume there), or past `end` (a payload still arriving). Returns the
 * position and the values left: the walk resumes where it stopped, so a value that
 * arrives a byte at a time is walked once.
 */
export function msgpackWalk(b: Uint8Array, pos: number, end: number, todo: number): [number, number] {
  while (todo > 0 && pos < end) {
    const t = b[pos]!;
    let head = 1;
    let body = 0;
    let items = 0;
    if (t <= 0x7f || t >= 0xe0) {
      // fixint
    } else if (t >= 0xa0 && t <= 0xbf) body = t & 0x1f;
    else if (t >= 0x90 && t <= 0x9f) items = t & 0x0f;
    else if (t >= 0x80 && t <= 0x8f) items = 2 * (t & 0x0f);
    else if (FIXED_BODY.has(t)) body = FIXED_BODY.get(t)!;
    else {
      const k = LENGTH_BYTES.get(t);
      if (k === undefined) throw new Error(`forward receiver: 0x${t.toString(16)} is not a MessagePack type`);
      if (pos + 1 + k > end) break;
      let n = 0;
      for (let i = 1; i <= k; i++) n = n * 256 + b[pos + i]!;
      head += k;
      if (t >= 0xdc) items = t >= 0xde ? 2 * n : n;
      else body = t >= 0xc7 && t <= 0xc9 ? n + 1 : n; // an ext's payload follows its type byte
    }
    todo += items - 1;
    pos += head + body;
  }
  return [pos, todo];
}

/**
 * Cuts a byte stream into whole MessagePack values, each byte copied once (into one
 * buffer that grows to the largest message) and walked once; a value is handed out as a
 * view that is valid until the next push.
 */
export class Frames {
  #b = Buffer.allocUnsafe(1 << 16);
  #start = 0; // the value under way begins here
  #end = 0;
  #open = false;
  #pos = 0; // the walk's state in the value under way
  #todo = 0;

  *push(chunk: Buffer): Generator<Buffer> {
    if (!this.#open && this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end + chunk.length > this.#b.length) {
      const kept = this.#end - this.#start;
      const into =
        kept + chunk.length > this.#b.length ? Buffer.allocUnsafe(2 * (kept + chunk.length)) : this.#b;
      this.#b.copy(into, 0, this.#start, this.#end); // overlapping when into is #b: copy is memmove
      this.#pos -= this.#start;
      this.#b = into;
      this.#start = 0;
      this.#end = kept;
    }
    chunk.copy(this.#b, this.#end);
    this.#end += chunk.length;
    for (;;) {
      if (!this.#open) {
        if (this.#start === this.#end) return;
        this.#open = true;
        this.#pos = this.#start;
        this.#todo = 1;
      }
      [this.#pos, this.#todo] = msgpackWalk(this.#b, this.#pos, this.#end, this.#todo);
      if (this.#todo > 0 || this.#pos > this.#end) return;
      const frame = this.#b.subarray(this.#start, this.#pos);
      this.#start = this.#pos;
      this.#open = false;
      yield frame;
    }
  }
}

export interface ReceivedEvent {
  readonly tag: string;
  readonly time: number | { eventTime: number };
  readonly record: Record<string, unknown>;
}

export interface ReceivedMessage {
  readonly mode: 'Message' | 'Forward' | 'PackedForward' | 'CompressedPackedForward';
  readonly tag: string;
  readonly chunk: string | undefined;
  readonly size: number | undefined;
  /** PackedForward entries as received (decompressed), for an independent decoder. */
  readonly entries: Buffer | null;
  /** The message's option map as sent. */
  readonly option: Record<string, unknown> | undefined;
}

export interface ReceiverOptions {
  readonly sharedKey?: string;
  /** user -> password; the server then asks PING for a user. */
  readonly users?: Readonly<Record<string, string>>;
  readonly tls?: tls.TlsOptions;
  readonly hostname?: string;
  /** false: count events without decoding or keeping them (benchmarks). Default true. */
  readonly keepEvents?: boolean;
}

const sha512hex = (...p: (string | Buffer)[]) => {
  const h = createHash('sha512');
  for (const x of p) h.update(x);
  return h.digest('hex');
};

export class ForwardReceiver {
  readonly events: ReceivedEvent[] = [];
  readonly messages: ReceivedMessage[] = [];
  readonly authFailures: string[] = [];
  /** Acks sent; set `ack` false to receive without acknowledging (a wedged server). */
  acks = 0;
  ack = true;
  /** When set, only the messages it is true for are acknowledged (while `ack`). */
  ackIf: ((option: Record<string, unknown> | undefined) => boolean) | null = null;
  /** Events received (kept or not). */
  received = 0;
  readonly #o: ReceiverOptions;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  port = 0;

  constructor(o: ReceiverOptions = {}) {
    this.#o = o;
    this.#server = o.tls
      ? tls.createServer(o.tls, (s) => this.#conn(s))
      : net.createServer((s) => this.#conn(s));
  }

  async listen(port = 0): Promise<number> {
    await new Promise<void>((res) => this.#server.listen(port, '127.0.0.1', res));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((res) => this.#server.close(() => res()));
  }

  /** Drops every open connection (the server restarting), keeps listening. */
  dropConnections(): void {
    for (const s of this.#sockets) s.destroy();
  }

  /** Event records of one field, in arrival order. */
  field(name: string): unknown[] {
    return this.events.map((e) => e.record[name]);
  }

  #conn(s: net.Socket): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => {});
    const nonce = randomBytes(16);
    const authSalt = this.#o.users ? randomBytes(16) : Buffer.alloc(0);
    let authed = this.#o.sharedKey === undefined;
    if (!authed) s.write(packr.pack(['HELO', { nonce, auth: authSalt, keepalive: true }]));
    // Acks are small writes after each message: not held back for the client's ACK.
    s.setNoDelay(true);
    const frames = new Frames();
    s.on('data', (chunk: Buffer) => {
      try {
        for (const f of frames.push(chunk)) {
          const m = (this.#o.keepEvents === false ? packr : keeping).unpack(f) as unknown[];
          if (!authed) authed = this.#ping(s, m, nonce, authSalt);
          else this.#event(s, m);
        }
      } catch {
        s.destroy();
      }
    });
  }

  /** Checks PING and answers PONG; true when the client is let in. */
  #ping(s: net.Socket, m: unknown[], nonce: Buffer, authSalt: Buffer): boolean {
    const [kind, host, salt, digest, user, pass] = m as [string, string, string, string, string, string];
    const key = this.#o.sharedKey!;
    let reason = '';
    if (kind !== 'PING') reason = 'expected PING';
    else if (digest !== sha512hex(salt, host, nonce, key)) reason = 'shared key mismatch';
    else if (this.#o.users) {
      const want = this.#o.users[user];
      if (want === undefined || pass !== sha512hex(authSalt, user, want))
        reason = 'username/password mismatch';
    }
    const me = this.#o.hostname ?? 'receiver';
    s.write(packr.pack(['PONG', reason === '', reason, me, sha512hex(salt, me, nonce, key)]));
    if (reason !== '') {
      this.authFailures.push(reason);
      s.end();
      return false;
    }
    return true;
  }

  #event(s: net.Socket, m: unknown[]): void {
    const tag = String(m[0]);
    let option: Record<string, unknown> | undefined;
    let mode: ReceivedMessage['mode'];
    let entries: Buffer | null = null;
    if (Array.isArray(m[1])) {
      mode = 'Forward';
      for (const [time, record] of m[1] as [number, Record<string, unknown>][])
        this.events.push({ tag, time, record });
      option = m[2] as typeof option;
    } else if (m[1] instanceof Uint8Array || typeof m[1] === 'string') {
      option = m[2] as typeof option;
      const gz = option?.compressed === 'gzip';
      mode = gz ? 'CompressedPackedForward' : 'PackedForward';
      if (this.#o.keepEvents === false) {
        this.received += Number(option?.size ?? 0);
      } else {
        const raw = Buffer.from(m[1] as Uint8Array);
        entries = gz ? gunzipSync(raw) : raw;
        for (const [time, record] of unpackMultiple(entries) as [number, Record<string, unknown>][])
          this.events.push({ tag, time, record });
      }
    } else {
      mode = 'Message';
      this.events.push({ tag, time: m[1] as number, record: m[2] as Record<string, unknown> });
      option = m[3] as typeof option;
    }
    const chunk = option?.chunk === undefined ? undefined : String(option.chunk);
    if (this.#o.keepEvents !== false) {
      this.received = this.events.length;
      this.messages.push({ mode, tag, chunk, size: option?.size as number | undefined, entries, option });
    }
    if (chunk !== undefined && this.ack && (this.ackIf?.(option) ?? true)) {
      this.acks++;
      s.write(packr.pack({ ack: chunk }));
    }
  }
}
