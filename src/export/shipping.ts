// The network sinks the settings ask for (any mix of Fluent Forward, NATS JetStream and
// OTLP, beside flows.log), each with its own spool under the spool directory.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ForwardTransport } from './forward.ts';
import { NatsTransport } from './nats.ts';
import { NetworkSink } from './network.ts';
import { OtlpTransport } from './otlp.ts';
import type { SinkLogger } from './sink.ts';
import { Spool } from './spool.ts';
import type { Transport } from './transport.ts';

export interface BatchLimits {
  readonly records: number;
  readonly bytes: number;
  readonly timeoutMs: number;
}

export interface ShippingOptions {
  readonly node: string;
  readonly spoolDirectory: string;
  readonly spoolMaxBytes: number;
  readonly spoolFsyncIntervalMs: number;
  readonly forward: {
    readonly address: string | null;
    readonly tag: string;
    readonly tls: boolean;
    readonly tlsCa: string | null;
    readonly sharedKey: string | null;
    readonly username: string | null;
    readonly password: string | null;
    readonly compress: boolean;
    readonly batch: BatchLimits;
  };
  readonly nats: {
    readonly url: string | null;
    readonly subject: string | null;
    readonly stream: string;
    readonly createStream: boolean;
    readonly user: string | null;
    readonly password: string | null;
    readonly token: string | null;
    readonly tlsCa: string | null;
    readonly batch: BatchLimits;
  };
  readonly otlp: {
    readonly endpoint: string | null;
    /** `name=value` pairs, comma-separated (e.g. authorization=Bearer x). */
    readonly headers: string | null;
    readonly tlsCa: string | null;
    readonly batch: BatchLimits;
  };
}

/** HOST:PORT or [v6]:PORT. */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[3]);
  if (m === null || port < 1 || port > 65535) throw new Error(`not HOST:PORT: ${JSON.stringify(s)}`);
  return { host: m[1] ?? m[2]!, port };
}

export function parseHeaders(s: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (s ?? '').split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`not name=value: ${JSON.stringify(part)}`);
    out[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim();
  }
  return out;
}

/** One NetworkSink per configured remote, its spool opened (and replaying) under spoolDirectory/NAME. */
export async function openShippingSinks(o: ShippingOptions, logger?: SinkLogger): Promise<NetworkSink[]> {
  const wanted: { name: string; transport: Transport; batch: BatchLimits }[] = [];
  // A file or value that cannot be used is reported with the setting that named it.
  const setting = <T>(name: string, value: unknown, f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw new Error(`${name}=${String(value)}: ${(err as Error).message}`);
    }
  };
  const ca = (name: string, f: string | null): { ca?: Buffer } =>
    f === null ? {} : setting(name, f, () => ({ ca: readFileSync(f) }));
  if (o.forward.address !== null) {
    const addr = o.forward.address;
    const { host, port } = setting('FluentForwardAddress', addr, () => parseHostPort(addr));
    const f = o.forward;
    wanted.push({
      name: 'fluent-forward',
      transport: new ForwardTransport({
        host,
        port,
        tag: f.tag,
        tls: f.tls || f.tlsCa !== null ? ca('FluentForwardTlsCa', f.tlsCa) : null,
        sharedKey: f.sharedKey,
        username: f.username,
        password: f.password,
        selfHostname: o.node,
        compress: f.compress,
      }),
      batch: f.batch,
    });
  }
  if (o.nats.url !== null) {
    const n = o.nats;
    wanted.push({
      name: 'nats',
      transport: new NatsTransport({
        url: n.url!,
        node: o.node,
        ...(n.subject !== null ? { subject: n.subject } : {}),
        stream: n.stream,
        createStream: n.createStream,
        user: n.user,
        pass: n.password,
        token: n.token,
        ...(n.tlsCa !== null ? { tls: { ca: ca('NatsTlsCa', n.tlsCa).ca!.toString() } } : {}),
      }),
      batch: n.batch,
    });
  }
  if (o.otlp.endpoint !== null) {
    wanted.push({
      name: 'otlp',
      transport: new OtlpTransport({
        endpoint: o.otlp.endpoint,
        headers: setting('OtlpHeaders', '…', () => parseHeaders(o.otlp.headers)),
        tls: ca('OtlpTlsCa', o.otlp.tlsCa),
      }),
      batch: o.otlp.batch,
    });
  }
  const sinks: NetworkSink[] = [];
  for (const w of wanted) {
    const directory = join(o.spoolDirectory, w.name);
    let spool: Spool;
    try {
      spool = await Spool.open({
        directory,
        maxBytes: o.spoolMaxBytes,
        fsyncIntervalMs: o.spoolFsyncIntervalMs,
      });
    } catch (err) {
      for (const s of sinks) await s.close();
      throw new Error(
        `SpoolDirectory=${o.spoolDirectory}: cannot open ${directory}: ${(err as Error).message}`,
      );
    }
    sinks.push(
      new NetworkSink({
        name: w.name,
        transport: w.transport,
        spool,
        node: o.node,
        maxBatchLines: w.batch.records,
        maxBatchBytes: w.batch.bytes,
        retry: { timeoutMs: w.batch.timeoutMs },
        ...(logger ? { logger } : {}),
      }),
    );
  }
  return sinks;
}
