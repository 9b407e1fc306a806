// The shipping settings (network sinks, spool, dynamic aggregation): their rows of the
// one SETTINGS table (config.ts spreads them in), their defaults, and the options the
// sinks are built from. Endpoints use the names operators and scripts rely on:
// `--fluent-forward-address HOST:PORT`, `--nats-url nats://HOST:PORT` (with
// `--nats-subject`, `--nats-stream`, `--nats-create-stream`), `--otlp-endpoint URL`,
// `--spool-directory DIR`, each also `FLOWLOGD_<NAME>` and `spec.<name>`.

import { LINE_BATCH_LINES } from '../export/batch.ts';
import type { ShippingOptions } from '../export/shipping.ts';

export interface ShipConfig {
  readonly fluentForwardAddress: string | null;
  readonly fluentForwardTag: string;
  readonly fluentForwardTls: boolean;
  readonly fluentForwardTlsCa: string | null;
  readonly fluentForwardSharedKey: string | null;
  readonly fluentForwardUsername: string | null;
  readonly fluentForwardPassword: string | null;
  readonly fluentForwardCompress: boolean;
  readonly fluentForwardBatchRecords: number;
  readonly fluentForwardBatchBytes: number;
  readonly fluentForwardTimeoutMs: number;
  readonly natsUrl: string | null;
  readonly natsSubject: string | null;
  readonly natsStream: string;
  readonly natsCreateStream: boolean;
  readonly natsUser: string | null;
  readonly natsPassword: string | null;
  readonly natsToken: string | null;
  readonly natsTlsCa: string | null;
  readonly natsBatchRecords: number;
  readonly natsBatchBytes: number;
  readonly natsTimeoutMs: number;
  readonly otlpEndpoint: string | null;
  readonly otlpHeaders: string | null;
  readonly otlpTlsCa: string | null;
  readonly otlpBatchRecords: number;
  readonly otlpBatchBytes: number;
  readonly otlpTimeoutMs: number;
  readonly spoolDirectory: string;
  readonly spoolMaxSizeMB: number;
  readonly spoolFsyncIntervalMs: number;
  /** Calico Enterprise's names. */
  readonly flowLogsDynamicAggregationEnabled: boolean;
  readonly flowLogsAggregationThresholdBytes: number;
  readonly flowLogsPositionFilePath: string;
}

export type ShipValueType =
  | 'duration'
  | 'bool'
  | 'posint'
  | 'string'
  | 'path'
  | 'hostport'
  | 'natsUrl'
  | 'httpUrl';

/** [key, PascalCase name, type, bounds]: env FLOWLOGD_<NAME>, flag --<name> (Felix's: FELIX_, kebab). */
export type ShipSettingRow = readonly [
  keyof ShipConfig,
  string,
  ShipValueType,
  { readonly min?: number; readonly max?: number; readonly zeroOff?: boolean; readonly felix?: true }?,
];

const MB = 1 << 20;
const batchRows = (prefix: 'fluentForward' | 'nats' | 'otlp', name: string): ShipSettingRow[] => [
  [`${prefix}BatchRecords`, `${name}BatchRecords`, 'posint', { min: 1, max: 100_000 }],
  [`${prefix}BatchBytes`, `${name}BatchBytes`, 'posint', { min: 1024, max: 64 * MB }],
  [`${prefix}TimeoutMs`, `${name}Timeout`, 'duration', { min: 100, max: 600_000 }],
];

export const SHIP_SETTINGS: readonly ShipSettingRow[] = [
  ['fluentForwardAddress', 'FluentForwardAddress', 'hostport'],
  ['fluentForwardTag', 'FluentForwardTag', 'string'],
  ['fluentForwardTls', 'FluentForwardTls', 'bool'],
  ['fluentForwardTlsCa', 'FluentForwardTlsCa', 'path'],
  ['fluentForwardSharedKey', 'FluentForwardSharedKey', 'string'],
  ['fluentForwardUsername', 'FluentForwardUsername', 'string'],
  ['fluentForwardPassword', 'FluentForwardPassword', 'string'],
  ['fluentForwardCompress', 'FluentForwardCompress', 'bool'],
  ...batchRows('fluentForward', 'FluentForward'),
  ['natsUrl', 'NatsUrl', 'natsUrl'],
  ['natsSubject', 'NatsSubject', 'string'],
  ['natsStream', 'NatsStream', 'string'],
  ['natsCreateStream', 'NatsCreateStream', 'bool'],
  ['natsUser', 'NatsUser', 'string'],
  ['natsPassword', 'NatsPassword', 'string'],
  ['natsToken', 'NatsToken', 'string'],
  ['natsTlsCa', 'NatsTlsCa', 'path'],
  ...batchRows('nats', 'Nats'),
  ['otlpEndpoint', 'OtlpEndpoint', 'httpUrl'],
  ['otlpHeaders', 'OtlpHeaders', 'string'],
  ['otlpTlsCa', 'OtlpTlsCa', 'path'],
  ...batchRows('otlp', 'Otlp'),
  ['spoolDirectory', 'SpoolDirectory', 'path'],
  ['spoolMaxSizeMB', 'SpoolMaxSizeMB', 'posint', { min: 1, max: 1 << 20 }],
  ['spoolFsyncIntervalMs', 'SpoolFsyncInterval', 'duration', { min: 10, max: 60_000, zeroOff: true }],
  ['flowLogsDynamicAggregationEnabled', 'FlowLogsDynamicAggregationEnabled', 'bool', { felix: true }],
  [
    'flowLogsAggregationThresholdBytes',
    'FlowLogsAggregationThresholdBytes',
    'posint',
    { min: 1, felix: true },
  ],
  ['flowLogsPositionFilePath', 'FlowLogsPositionFilePath', 'path', { felix: true }],
];

export const SHIP_DEFAULTS: Readonly<Record<keyof ShipConfig, unknown>> = {
  fluentForwardAddress: null,
  fluentForwardTag: 'flows', // the tag Calico's Fluentd gives flows.log
  fluentForwardTls: false,
  fluentForwardTlsCa: null,
  fluentForwardSharedKey: null,
  fluentForwardUsername: null,
  fluentForwardPassword: null,
  fluentForwardCompress: false,
  fluentForwardBatchRecords: LINE_BATCH_LINES,
  fluentForwardBatchBytes: MB,
  fluentForwardTimeoutMs: 10_000,
  natsUrl: null,
  natsSubject: null,
  natsStream: 'FLOWLOGS',
  natsCreateStream: false,
  natsUser: null,
  natsPassword: null,
  natsToken: null,
  natsTlsCa: null,
  natsBatchRecords: LINE_BATCH_LINES,
  natsBatchBytes: 512 << 10, // under nats-server's default 1 MiB max_payload, headers included
  natsTimeoutMs: 10_000,
  otlpEndpoint: null,
  otlpHeaders: null,
  otlpTlsCa: null,
  otlpBatchRecords: LINE_BATCH_LINES,
  otlpBatchBytes: MB,
  otlpTimeoutMs: 10_000,
  spoolDirectory: '/var/lib/flowlogd/spool',
  spoolMaxSizeMB: 256,
  spoolFsyncIntervalMs: 1000,
  flowLogsDynamicAggregationEnabled: false,
  flowLogsAggregationThresholdBytes: 8192, // Calico Enterprise's default
  flowLogsPositionFilePath: '/var/log/calico/flows.log.pos',
};

/** HOST:PORT and URL values: null when valid, else what is wrong. */
export function checkShipValue(type: 'hostport' | 'natsUrl' | 'httpUrl', text: string): string | null {
  if (type === 'hostport') {
    const m = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
    return m !== null && Number(m[1]) >= 1 && Number(m[1]) <= 65535
      ? null
      : 'must be HOST:PORT (port 1–65535)';
  }
  const schemes = type === 'natsUrl' ? ['nats:', 'tls:'] : ['http:', 'https:'];
  // A NATS URL may list a cluster's servers, comma-separated.
  const parts = type === 'natsUrl' ? text.split(',') : [text];
  for (const p of parts) {
    let u: URL;
    try {
      u = new URL(p.trim());
    } catch {
      return `must be a URL (${schemes.map((s) => `${s}//HOST:PORT`).join(' or ')})`;
    }
    if (!schemes.includes(u.protocol) || u.hostname === '')
      return `must be a ${schemes.join(' or ')} URL with a host`;
  }
  return null;
}

export function shippingOptions(c: ShipConfig & { readonly nodeName: string }): ShippingOptions {
  const batch = (p: 'fluentForward' | 'nats' | 'otlp') => ({
    records: c[`${p}BatchRecords`],
    bytes: c[`${p}BatchBytes`],
    timeoutMs: c[`${p}TimeoutMs`],
  });
  return {
    node: c.nodeName,
    spoolDirectory: c.spoolDirectory,
    spoolMaxBytes: c.spoolMaxSizeMB * MB,
    spoolFsyncIntervalMs: c.spoolFsyncIntervalMs,
    forward: {
      address: c.fluentForwardAddress,
      tag: c.fluentForwardTag,
      tls: c.fluentForwardTls,
      tlsCa: c.fluentForwardTlsCa,
      sharedKey: c.fluentForwardSharedKey,
      username: c.fluentForwardUsername,
      password: c.fluentForwardPassword,
      compress: c.fluentForwardCompress,
      batch: batch('fluentForward'),
    },
    nats: {
      url: c.natsUrl,
      subject: c.natsSubject,
      stream: c.natsStream,
      createStream: c.natsCreateStream,
      user: c.natsUser,
      password: c.natsPassword,
      token: c.natsToken,
      tlsCa: c.natsTlsCa,
      batch: batch('nats'),
    },
    otlp: { endpoint: c.otlpEndpoint, headers: c.otlpHeaders, tlsCa: c.otlpTlsCa, batch: batch('otlp') },
  };
}
