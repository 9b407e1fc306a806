// NATS JetStream: one batch is one message on `<subject>` (default `flowlogs.<node>`),
// published with a publish ack. The payload is the batch's JSON Lines, exactly the lines
// flows.log gets, so a consumer reuses its parser. `Nats-Msg-Id` is node:bootId:seq, so a
// batch replayed after a reconnect or a restart (the spool keeps it until acknowledged)
// is dropped by the stream's duplicate window instead of stored twice. Headers carry the
// batch sequence, the aggregation level in force, the node and the record count.

import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import './nats-outbound.ts';
import { fatal, retryable, type SendResult, type ShipBatch, type Transport, tlsReason } from './transport.ts';

export interface NatsOptions {
  /** nats://HOST:PORT (several, comma-separated, for a cluster). */
  readonly url: string;
  /** Default `flowlogs.<node>`. */
  readonly subject?: string;
  /** Stream to create when `createStream` (default FLOWLOGS, capturing `flowlogs.>`). */
  readonly stream?: string;
  readonly createStream?: boolean;
  /** Duplicate window of a created stream; default 2 minutes. */
  readonly duplicateWindowMs?: number;
  readonly user?: string | null;
  readonly pass?: string | null;
  readonly token?: string | null;
  readonly tls?: NodeConnectionOptions['tls'];
  readonly node: string;
}

export const DEFAULT_NATS_STREAM = 'FLOWLOGS';

export function natsSubject(node: string, subject?: string): string {
  // Subject tokens may not hold '.', ' ', '*' or '>': a node name like a.b.c stays one token.
  return subject ?? `flowlogs.${node.replace(/[.\s*>]/g, '_')}`;
}

export function natsMsgId(b: ShipBatch): string {
  return `${b.node}:${b.bootId}:${b.seq}`;
}

export class NatsTransport implements Transport {
  readonly #o: NatsOptions;
  readonly subject: string;
  #nc: NatsConnection | null = null;
  #js: JetStreamClient | null = null;
  #connecting: Promise<JetStreamClient> | null = null;
  #streamReady = false;
  #streamChecking: Promise<void> | null = null;

  constructor(o: NatsOptions) {
    this.#o = o;
    this.subject = natsSubject(o.node, o.subject);
  }

  async #client(): Promise<JetStreamClient> {
    if (this.#js !== null && this.#nc !== null && !this.#nc.isClosed()) return this.#js;
    this.#connecting ??= (async () => {
      try {
        const nc = await connect({
          servers: this.#o.url.split(',').map((s) => s.trim()),
          name: `flowlogd-${this.#o.node}`,
          // The client reconnects by itself for ever; publishes meanwhile time out and
          // the retry loop resends them.
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          ...(this.#o.user ? { user: this.#o.user, pass: this.#o.pass ?? '' } : {}),
          ...(this.#o.token ? { token: this.#o.token } : {}),
          ...(this.#o.tls ? { tls: this.#o.tls } : {}),
        });
        this.#nc = nc;
        this.#js = jetstream(nc);
        return this.#js;
      } finally {
        this.#connecting = null;
      }
    })();
    return this.#connecting;
  }

  /**
   * One check-or-create for every concurrent send. Each send running its own would let
   * their round trips finish in any order, and the publishes behind them would leave
   * out of sequence (seen as batch 3 stored before batch 2 on a loaded machine).
   */
  #ensureStream(nc: NatsConnection): Promise<void> {
    if (this.#streamReady || !this.#o.createStream) return Promise.resolve();
    this.#streamChecking ??= (async () => {
      try {
        const jsm: JetStreamManager = await jetstreamManager(nc);
        const name = this.#o.stream ?? DEFAULT_NATS_STREAM;
        try {
          await jsm.streams.info(name);
        } catch {
          await jsm.streams.add({
            name,
            subjects: [this.subject.startsWith('flowlogs.') ? 'flowlogs.>' : this.subject],
            duplicate_window: (this.#o.duplicateWindowMs ?? 120_000) * 1_000_000,
          });
        }
        this.#streamReady = true;
      } finally {
        this.#streamChecking = null;
      }
    })();
    return this.#streamChecking;
  }

  async send(batch: ShipBatch, deadline: number): Promise<SendResult> {
    let js: JetStreamClient;
    try {
      js = await this.#client();
      await this.#ensureStream(this.#nc!);
    } catch (err) {
      return retryable(reasonOf(err));
    }
    const h = headers();
    h.set('Flowlogd-Seq', String(batch.seq));
    h.set('Flowlogd-Boot-Id', batch.bootId);
    h.set('Flowlogd-Node', batch.node);
    h.set('Flowlogd-Aggregation-Level', String(batch.level));
    h.set('Flowlogd-Records', String(batch.count));
    try {
      const ack = await js.publish(this.subject, batch.data, {
        msgID: natsMsgId(batch),
        headers: h,
        timeout: Math.max(1, deadline - Date.now()),
      });
      return { status: 'ok', duplicate: ack.duplicate };
    } catch (err) {
      const reason = reasonOf(err);
      // A message larger than the server's max_payload is never accepted.
      if (/max.?payload/i.test(String((err as Error)?.message))) return fatal(reason);
      return retryable(reason);
    }
  }

  async close(): Promise<void> {
    const nc = this.#nc;
    this.#nc = null;
    this.#js = null;
    await nc?.close().catch(() => {});
  }
}

/** A short retry reason; a refused certificate or login names the settings to fix. */
function reasonOf(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && e.code !== '') return tlsReason(e.code, 'NatsTlsCa') ?? e.code;
  const m = String(e?.message ?? err);
  if (e?.name === 'AuthorizationError' || /authorization violation/i.test(m))
    return 'auth refused (NatsUser/NatsPassword or NatsToken)';
  if (/timeout/i.test(m)) return 'timeout';
  if (/no responders/i.test(m)) return 'no responders';
  if (/closed/i.test(m)) return 'connection closed';
  return typeof e?.name === 'string' ? e.name : 'error';
}
