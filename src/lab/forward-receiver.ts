// A Fluent Forward protocol v1 server for tests and benchmarks, written from the specification
// (fluent/fluentd wiki, "Forward Protocol Specification v1"): the four event modes
// (Message, Forward, PackedForward, CompressedPackedForward), `chunk` acks, and the
// HELO/PING/PONG shared-key and user handshake. Checked against a third-party client
// (python3-fluent-logger) in forward.test.ts before flowlogd is checked against it.

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { addExtension, Packr, UnpackrStream, unpackMultiple } from 'msgpackr';

/** EventTime (ext type 0: uint32 seconds, uint32 nanoseconds) as seconds with a fraction. */
addExtension({
  type: 0,
  unpack: (b: Buffer) => ({ eventTime: b.readUInt32BE(0) + b.readUInt32BE(4) / 1e9 }),
});

const packr = new Packr({ useRecords: false });

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
    const decoder = new UnpackrStream({ useRecords: false, mapsAsObjects: true });
    s.pipe(decoder);
    decoder.on('error', () => s.destroy());
    decoder.on('data', (m: unknown[]) => {
      if (!authed) {
        authed = this.#ping(s, m, nonce, authSalt);
        return;
      }
      this.#event(s, m);
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
      const raw = Buffer.from(m[1] as Uint8Array);
      const gz = option?.compressed === 'gzip';
      mode = gz ? 'CompressedPackedForward' : 'PackedForward';
      if (this.#o.keepEvents === false) {
        this.received += Number(option?.size ?? 0);
      } else {
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
