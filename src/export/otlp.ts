// OTLP logs over HTTP (protobuf): one batch is one ExportLogsServiceRequest with one log
// record per flow log line. Each field of the line becomes an attribute of the same name
// (nested objects become key/value lists, arrays arrays); the time is `end_time`, the
// observed time the moment it is sent. The resource names the node and this flowlogd
// (service.name, host.name, k8s.node.name) and carries the batch sequence and the
// aggregation level in force. Encoded with the OpenTelemetry JS SDK's own serializer.
//
// Replies (OTLP/HTTP spec): 200 with partial_success counts rejected records as dropped
// ('rejected': the server will never take them, so no retry); 429, 502, 503 and 504 are
// retried, after Retry-After when given; so are 401 and 403 (the credentials in
// OtlpHeaders are wrong, not the batch: it stays spooled until they are fixed); any other
// status refuses the batch ('fatal'). A certificate the client does not trust is retried
// under a reason naming OtlpTlsCa.

import http from 'node:http';
import https from 'node:https';
import { ProtobufLogsSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs';
import { errorCode } from './sink.ts';
import {
  fatal,
  parseRetryAfter,
  retryable,
  type SendResult,
  type ShipBatch,
  type Transport,
  tlsReason,
} from './transport.ts';

export interface OtlpOptions {
  /** http(s)://HOST:PORT[/path]; without a path, /v1/logs. */
  readonly endpoint: string;
  /** Extra request headers (e.g. authorization). */
  readonly headers?: Readonly<Record<string, string>>;
  /** TLS for https: ca, cert, key, rejectUnauthorized. */
  readonly tls?: https.AgentOptions;
}

const RETRYABLE = new Set([429, 502, 503, 504]);
const SEVERITY_INFO = 9;
const SCOPE = { name: 'flowlogd', version: '0.1.0' };

export function otlpUrl(endpoint: string): URL {
  const u = new URL(endpoint);
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/v1/logs';
  return u;
}

/** The batch as an ExportLogsServiceRequest (protobuf bytes). */
export function encodeLogsRequest(batch: ShipBatch, nowMs = Date.now()): Uint8Array {
  const resource = resourceFromAttributes({
    'service.name': 'flowlogd',
    'host.name': batch.node,
    'k8s.node.name': batch.node,
    'flowlogd.boot_id': batch.bootId,
    'flowlogd.batch_seq': batch.seq,
    'flowlogd.aggregation_level': batch.level,
  });
  const observed: [number, number] = [Math.floor(nowMs / 1000), (nowMs % 1000) * 1e6];
  const records: ReadableLogRecord[] = [];
  const data = batch.data;
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0x0a, start);
    if (end < 0) end = data.length;
    if (end > start) {
      const rec = JSON.parse(data.toString('utf8', start, end)) as Record<string, unknown>;
      const t = Number.isSafeInteger(rec.end_time) ? (rec.end_time as number) : observed[0];
      records.push({
        hrTime: [t, 0],
        hrTimeObserved: observed,
        severityNumber: SEVERITY_INFO,
        severityText: 'INFO',
        eventName: 'calico.flow_log',
        resource,
        instrumentationScope: SCOPE,
        // Nulls carry no value in OTLP: the attribute is left out, as a missing field.
        attributes: Object.fromEntries(Object.entries(rec).filter(([, v]) => v !== null)) as never,
        droppedAttributesCount: 0,
      });
    }
    start = end + 1;
  }
  return ProtobufLogsSerializer.serializeRequest(records) ?? new Uint8Array();
}

export class OtlpTransport implements Transport {
  readonly #url: URL;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #agent: http.Agent;
  readonly #lib: typeof http | typeof https;

  constructor(o: OtlpOptions) {
    this.#url = otlpUrl(o.endpoint);
    this.#headers = o.headers ?? {};
    const https_ = this.#url.protocol === 'https:';
    this.#lib = https_ ? https : http;
    this.#agent = https_
      ? new https.Agent({ keepAlive: true, ...o.tls })
      : new http.Agent({ keepAlive: true });
  }

  async send(batch: ShipBatch, deadline: number): Promise<SendResult> {
    let body: Uint8Array;
    try {
      body = encodeLogsRequest(batch);
    } catch (err) {
      return fatal(`line is not a JSON object: ${(err as Error).message}`);
    }
    return new Promise((resolve) => {
      const req = this.#lib.request(
        this.#url,
        {
          method: 'POST',
          agent: this.#agent,
          headers: {
            ...this.#headers,
            'content-type': 'application/x-protobuf',
            'content-length': body.byteLength,
          },
          timeout: Math.max(1, deadline - Date.now()),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => resolve(retryable(errorCode(err))));
          res.on('end', () => resolve(this.#reply(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
      req.on('error', (err) => {
        const code = errorCode(err);
        resolve(retryable(tlsReason(code, 'OtlpTlsCa') ?? code));
      });
      req.end(body);
    });
  }

  #reply(status: number, h: http.IncomingHttpHeaders, body: Buffer): SendResult {
    if (status >= 200 && status < 300) {
      let partial: { rejectedLogRecords?: number | bigint; errorMessage?: string } | undefined;
      try {
        partial = ProtobufLogsSerializer.deserializeResponse(body).partialSuccess as typeof partial;
      } catch {
        partial = undefined; // an empty or non-protobuf 2xx body is a full success
      }
      const rejected = Number(partial?.rejectedLogRecords ?? 0);
      return rejected > 0
        ? { status: 'ok', rejected, reason: partial?.errorMessage ?? '' }
        : { status: 'ok', ...(partial?.errorMessage ? { reason: partial.errorMessage } : {}) };
    }
    const retryAfter = parseRetryAfter(h['retry-after'] as string | undefined);
    if (RETRYABLE.has(status)) return retryable(`http ${status}`, retryAfter);
    if (status === 401 || status === 403)
      return retryable(`http ${status}: auth refused (OtlpHeaders)`, retryAfter);
    return fatal(`http ${status}: ${body.toString('utf8', 0, Math.min(body.length, 200))}`);
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
