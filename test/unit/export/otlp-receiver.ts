// An OTLP/HTTP logs receiver for the tests: decodes ExportLogsServiceRequest with the
// official schema (test/fixtures/opentelemetry-proto, loaded by protobufjs) and answers
// with a scripted status, Retry-After and partial_success.

import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import protobuf from 'protobufjs';

const PROTO_DIR = join(import.meta.dirname, '../../fixtures/opentelemetry-proto');
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
root.loadSync('opentelemetry/proto/collector/logs/v1/logs_service.proto');
export const ExportLogsServiceRequest = root.lookupType(
  'opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest',
);
const ExportLogsServiceResponse = root.lookupType(
  'opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse',
);

/** A request as plain JSON-ish objects (longs as strings, enums as names, bytes base64). */
export type DecodedRequest = {
  resourceLogs: {
    resource: { attributes: KeyValue[] };
    scopeLogs: { scope: { name: string }; logRecords: LogRecord[] }[];
  }[];
};
export type KeyValue = { key: string; value: AnyValue };
export type AnyValue = {
  stringValue?: string;
  intValue?: string;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
};
export type LogRecord = {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: string;
  severityText: string;
  eventName?: string;
  attributes: KeyValue[];
};

/** An AnyValue as the JSON value it carries. */
export function plain(v: AnyValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(plain);
  if (v.kvlistValue !== undefined)
    return Object.fromEntries((v.kvlistValue.values ?? []).map((kv) => [kv.key, plain(kv.value)]));
  return null;
}

export interface Reply {
  status: number;
  retryAfter?: string;
  rejected?: number;
  message?: string;
  /** Answer this much later (a slow collector). */
  delayMs?: number;
}

export class OtlpReceiver {
  readonly requests: DecodedRequest[] = [];
  readonly paths: string[] = [];
  readonly contentTypes: string[] = [];
  /** Replies for the next requests, in order; then 200 without partial success. */
  replies: Reply[] = [];
  /** When set (and `replies` is empty), the reply to each request, from its decoded body. */
  replyTo: ((r: DecodedRequest) => Reply) | null = null;
  /** Each request's headers. */
  readonly headers: http.IncomingHttpHeaders[] = [];
  readonly #server: http.Server;
  readonly #scheme: string;
  url = '';

  /** With `tls` (PEM key and certificate), an HTTPS receiver. */
  constructor(tls?: { key: Buffer; cert: Buffer }) {
    const handle = (req: http.IncomingMessage, res: http.ServerResponse) => this.#handle(req, res);
    this.#server = tls ? https.createServer(tls, handle) : http.createServer(handle);
    this.#scheme = tls ? 'https' : 'http';
  }

  async listen(): Promise<string> {
    await new Promise<void>((res) => this.#server.listen(0, '127.0.0.1', res));
    this.url = `${this.#scheme}://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.url;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((res) => this.#server.close(() => res()));
  }

  /** Every log record received, with its resource's attributes, in arrival order. */
  records(): { resource: Record<string, unknown>; record: LogRecord; attrs: Record<string, unknown> }[] {
    return this.requests.flatMap((r) =>
      r.resourceLogs.flatMap((rl) => {
        const resource = Object.fromEntries(rl.resource.attributes.map((kv) => [kv.key, plain(kv.value)]));
        return rl.scopeLogs.flatMap((sl) =>
          sl.logRecords.map((record) => ({
            resource,
            record,
            attrs: Object.fromEntries(record.attributes.map((kv) => [kv.key, plain(kv.value)])),
          })),
        );
      }),
    );
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.paths.push(req.url ?? '');
      this.contentTypes.push(req.headers['content-type'] ?? '');
      this.headers.push(req.headers);
      const decoded = ExportLogsServiceRequest.toObject(
        ExportLogsServiceRequest.decode(Buffer.concat(chunks)),
        {
          longs: String,
          enums: String,
          bytes: String,
          defaults: false,
        },
      ) as DecodedRequest;
      const reply = this.replies.shift() ?? this.replyTo?.(decoded) ?? { status: 200 };
      if (reply.status === 200) this.requests.push(decoded);
      const headers: Record<string, string> = { 'content-type': 'application/x-protobuf' };
      if (reply.retryAfter !== undefined) headers['retry-after'] = reply.retryAfter;
      const body =
        reply.rejected !== undefined
          ? ExportLogsServiceResponse.encode({
              partialSuccess: { rejectedLogRecords: reply.rejected, errorMessage: reply.message ?? '' },
            }).finish()
          : ExportLogsServiceResponse.encode({}).finish();
      setTimeout(() => res.writeHead(reply.status, headers).end(Buffer.from(body)), reply.delayMs ?? 0);
    });
  }
}
