// Settings (SPEC §4, §8) from six sources with ONE precedence:
//
//     command line  >  environment  >  config file  >  FelixConfiguration node.<name>
//                   >  FelixConfiguration default  >  defaults
//
// - Command line: kebab-case of the Felix name, `--flow-logs-flush-interval 15s`.
// - Environment: `FELIX_<FELIXNAME-UPPERCASE>` (`FELIX_FLOWLOGSFLUSHINTERVAL=15`); a plain
//   integer duration means seconds, as in Felix. flowlogd's own settings use
//   `FLOWLOGD_*` (and `NODENAME` for the node name).
// - File: a FelixConfiguration-style YAML (`apiVersion: projectcalico.org/v3`,
//   `kind: FelixConfiguration`, `spec.<camelCaseName>`), given by `--config FILE` or
//   `FLOWLOGD_CONFIG`. Felix settings flowlogd does not use are ignored (listed in
//   `warnings`); unknown `flowLogs*` keys are errors (likely typos).
//
// - FelixConfiguration objects from the API (src/daemon/felix-configuration.ts, given
//   as `cluster`): their Felix flow log fields, read as in the file.
//
// Every value is validated; all problems are reported at once in one ConfigError whose
// lines name the setting, the source, the bad value and what is allowed. Nothing starts
// half-configured.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_WORKLOAD_INTERFACES } from '../aggregate/interfaces.ts';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_TCP_IDLE_TIMEOUT_MS,
  type ReconfigurableOptions,
} from '../aggregate/options.ts';
import { DEFAULT_FLOW_MAP_SIZE, FLOW_MAP_SIZE_MAX, FLOW_MAP_SIZE_MIN } from '../datapath/datapath.ts';
import type { ClusterSettings } from './felix-configuration.ts';
import { SHIP_DEFAULTS, SHIP_SETTINGS, type ShipConfig, type ShipSettingRow } from './ship-config.ts';
import { convert, type LogLevel, type SourceName, type ValueRule, type ValueType } from './values.ts';

export { LOG_LEVELS, type LogLevel, type SourceName } from './values.ts';

/**
 * The YAML parser (js-yaml, the one the metadata loader and the Kubernetes client use),
 * loaded only when a --config file is read: loadConfig is synchronous, hence require().
 */
function parseYaml(text: string): unknown {
  const { load } = createRequire(import.meta.url)('js-yaml') as typeof import('js-yaml');
  return load(text);
}

/** Interfaces attached by default: the host's usual uplinks and common CNIs' pod veths. */
export const DEFAULT_INTERFACES: readonly string[] = Object.freeze([
  'eth*',
  'en*',
  'bond*',
  ...DEFAULT_WORKLOAD_INTERFACES,
]);

export interface Config extends ShipConfig {
  readonly flowLogsFlushIntervalMs: number;
  readonly flowLogsFileEnabled: boolean;
  readonly flowLogsFileDirectory: string;
  readonly flowLogsFileMaxFiles: number;
  readonly flowLogsFileMaxFileSizeMB: number;
  readonly flowLogsFileAggregationKindForAllowed: 0 | 1 | 2 | 3;
  readonly flowLogsFileAggregationKindForDenied: 0 | 1 | 2 | 3;
  readonly flowLogsFileEnabledForAllowed: boolean;
  readonly flowLogsFileEnabledForDenied: boolean;
  readonly flowLogsFileIncludeLabels: boolean;
  readonly flowLogsFileIncludePolicies: boolean;
  readonly flowLogsFileIncludeService: boolean;
  /** Resolved: when unset, true without metadata and false with it (SPEC §4). */
  readonly flowLogsEnableHostEndpoint: boolean;
  readonly flowLogsEnableNetworkSets: boolean;
  /** UDP, ICMP and other connectionless flows end after this long without packets. */
  readonly flowLogsIdleTimeoutMs: number;
  /** TCP connections without FIN/RST end after this long without packets. */
  readonly flowLogsTcpIdleTimeoutMs: number;
  /** Kubernetes List file (YAML or JSON); null = no cluster metadata from a file. */
  readonly metadata: string | null;
  /** --kubeconfig FILE (else $KUBECONFIG, ~/.kube/config, in-cluster: src/enrich/kubeconfig.ts). */
  readonly kubeconfig: string | null;
  /** Globs of the interfaces to attach to. */
  readonly interfaces: readonly string[];
  /** Globs of the interfaces that are pods' veths (host side). */
  readonly workloadInterfaces: readonly string[];
  readonly nodeName: string;
  readonly logLevel: LogLevel;
  /** Also write flow log lines to stdout (JSON Lines). */
  readonly stdout: boolean;
  /** Port of the Prometheus /metrics endpoint; null = off. */
  readonly metricsPort: number | null;
  /** Address the metrics port binds to; null = every address. */
  readonly metricsAddress: string | null;
  /** Follow conntrack NEW/DESTROY events (lifecycle, Service DNAT joins). */
  readonly conntrack: boolean;
  /** Network namespace whose conntrack to follow (name in /run/netns or a path); null = flowlogd's own. */
  readonly conntrackNetns: string | null;
  /** Re-dump conntrack this often to reconcile and reap expired entries at once; 0 = only after an overrun. */
  readonly conntrackResyncIntervalMs: number;
  /** Trace policy drops (tp_btf/kfree_skb) into deny records. */
  readonly dropTracing: boolean;
  /** Entries of each kernel flow map generation (README, "When the kernel map is full"). */
  readonly flowMapSize: number;
  /** Connections the aggregator holds between flushes; beyond it, overflow records (README, Faults). */
  readonly maxConnections: number;
  /** bpffs directory the kernel maps are pinned in and adopted from at restart; null = not pinned. */
  readonly bpfPinDirectory: string | null;
  /** Where the drain journal lives (drained counts not yet flushed); null = none. */
  readonly stateDirectory: string | null;
  /** The journal's bound on disk, MB: past it drain cycles are not journaled until a flush (journal.h). */
  readonly stateDirectoryMaxSizeMB: number;
  /** Config file used, if any. */
  readonly configFile: string | null;
  /** Where each setting's value came from. */
  readonly sources: Readonly<Record<string, SourceName>>;
  /** Ignored inputs (other Felix settings in the file), one line each. */
  readonly warnings: readonly string[];
}

/**
 * What a SIGHUP does with a setting that changed: 'daemon' (the daemon applies it: the
 * flush interval), or the FlowAggregator option it sets through reconfigure(). Settings
 * without it are named in a warning and wait for the next start.
 */
type Live = 'daemon' | keyof ReconfigurableOptions;

interface SettingDef extends ValueRule {
  /** Key in Config. */
  readonly key: keyof Config;
  /** PascalCase name (Felix's, or ours in the same style). */
  readonly name: string;
  readonly env: string;
  readonly flag: string;
  /** Key under `spec:` in the file. */
  readonly fileKey: string;
  /** Applied by a SIGHUP at once (see Live); absent: at the next start. */
  readonly live?: Live;
}

function felix<const L extends Live | undefined = undefined>(
  key: keyof Config,
  name: string,
  type: ValueType,
  { min, live }: { min?: number; live?: L } = {},
): SettingDef & { readonly live: L } {
  const camel = name[0]!.toLowerCase() + name.slice(1);
  const kebab = name
    .replace(/MB$/, 'Mb')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();
  const env = `FELIX_${name.toUpperCase()}`;
  return { key, name, type, env, flag: `--${kebab}`, fileKey: camel, min, live: live as L };
}

/** Applied at the next start (`live: undefined`, typed so the table keeps its live entries' types). */
function own(
  key: keyof Config,
  name: string,
  type: ValueType,
  env: string,
  flag: string,
): SettingDef & { readonly live: undefined } {
  return { key, name, type, env, flag, fileKey: name[0]!.toLowerCase() + name.slice(1), live: undefined };
}

export const SETTINGS = [
  felix('flowLogsFlushIntervalMs', 'FlowLogsFlushInterval', 'duration', { min: 1000, live: 'daemon' }),
  felix('flowLogsFileEnabled', 'FlowLogsFileEnabled', 'bool'),
  felix('flowLogsFileDirectory', 'FlowLogsFileDirectory', 'path'),
  felix('flowLogsFileMaxFiles', 'FlowLogsFileMaxFiles', 'posint', { min: 1 }),
  felix('flowLogsFileMaxFileSizeMB', 'FlowLogsFileMaxFileSizeMB', 'posint', { min: 1 }),
  felix('flowLogsFileAggregationKindForAllowed', 'FlowLogsFileAggregationKindForAllowed', 'kind', {
    live: 'kindForAllowed',
  }),
  felix('flowLogsFileAggregationKindForDenied', 'FlowLogsFileAggregationKindForDenied', 'kind', {
    live: 'kindForDenied',
  }),
  felix('flowLogsFileEnabledForAllowed', 'FlowLogsFileEnabledForAllowed', 'bool', {
    live: 'enabledForAllowed',
  }),
  felix('flowLogsFileEnabledForDenied', 'FlowLogsFileEnabledForDenied', 'bool', { live: 'enabledForDenied' }),
  felix('flowLogsFileIncludeLabels', 'FlowLogsFileIncludeLabels', 'bool', { live: 'includeLabels' }),
  felix('flowLogsFileIncludePolicies', 'FlowLogsFileIncludePolicies', 'bool', { live: 'includePolicies' }),
  felix('flowLogsFileIncludeService', 'FlowLogsFileIncludeService', 'bool', { live: 'includeService' }),
  felix('flowLogsEnableHostEndpoint', 'FlowLogsEnableHostEndpoint', 'bool'),
  felix('flowLogsEnableNetworkSets', 'FlowLogsEnableNetworkSets', 'bool'),
  felix('flowLogsIdleTimeoutMs', 'FlowLogsIdleTimeout', 'duration', { min: 1000, live: 'idleTimeoutMs' }),
  felix('flowLogsTcpIdleTimeoutMs', 'FlowLogsTcpIdleTimeout', 'duration', {
    min: 1000,
    live: 'tcpIdleTimeoutMs',
  }),
  own('metadata', 'Metadata', 'path', 'FLOWLOGD_METADATA', '--metadata'),
  own('kubeconfig', 'Kubeconfig', 'path', 'KUBECONFIG', '--kubeconfig'),
  own('interfaces', 'Interfaces', 'globs', 'FLOWLOGD_INTERFACES', '--interfaces'),
  own(
    'workloadInterfaces',
    'WorkloadInterfaces',
    'globs',
    'FLOWLOGD_WORKLOAD_INTERFACES',
    '--workload-interfaces',
  ),
  own('nodeName', 'NodeName', 'string', 'NODENAME', '--node-name'),
  own('logLevel', 'LogLevel', 'logLevel', 'FLOWLOGD_LOG_LEVEL', '--log-level'),
  own('stdout', 'Stdout', 'bool', 'FLOWLOGD_STDOUT', '--stdout'),
  {
    ...own('metricsPort', 'MetricsPort', 'posint', 'FLOWLOGD_METRICS_PORT', '--metrics-port'),
    min: 1,
    max: 65535,
  },
  own('metricsAddress', 'MetricsAddress', 'string', 'FLOWLOGD_METRICS_ADDRESS', '--metrics-address'),
  own('conntrack', 'Conntrack', 'bool', 'FLOWLOGD_CONNTRACK', '--conntrack'),
  own('conntrackNetns', 'ConntrackNetns', 'string', 'FLOWLOGD_CONNTRACK_NETNS', '--conntrack-netns'),
  {
    ...own(
      'conntrackResyncIntervalMs',
      'ConntrackResyncInterval',
      'duration',
      'FLOWLOGD_CONNTRACK_RESYNC_INTERVAL',
      '--conntrack-resync-interval',
    ),
    min: 1000,
    max: 3_600_000,
    zeroOff: true,
  },
  own('dropTracing', 'DropTracing', 'bool', 'FLOWLOGD_DROP_TRACING', '--drop-tracing'),
  ...SHIP_SETTINGS.map(shipSetting),
  {
    ...own('flowMapSize', 'FlowMapSize', 'posint', 'FLOWLOGD_FLOW_MAP_SIZE', '--flow-map-size'),
    min: FLOW_MAP_SIZE_MIN,
    max: FLOW_MAP_SIZE_MAX,
  },
  {
    ...own('maxConnections', 'MaxConnections', 'posint', 'FLOWLOGD_MAX_CONNECTIONS', '--max-connections'),
    min: 1000,
    max: 100_000_000,
  },
  own('bpfPinDirectory', 'BpfPinDirectory', 'path', 'FLOWLOGD_BPF_PIN_DIRECTORY', '--bpf-pin-directory'),
  own('stateDirectory', 'StateDirectory', 'path', 'FLOWLOGD_STATE_DIRECTORY', '--state-directory'),
  {
    ...own(
      'stateDirectoryMaxSizeMB',
      'StateDirectoryMaxSizeMB',
      'posint',
      'FLOWLOGD_STATE_DIRECTORY_MAX_SIZE_MB',
      '--state-directory-max-size-mb',
    ),
    min: 1,
    max: 1_048_576,
  },
];

// Every entry is a SettingDef; the table is not annotated as one so that each entry keeps
// its own `live` type for the check below.
SETTINGS satisfies readonly SettingDef[];

type LiveDef = Extract<(typeof SETTINGS)[number], { readonly live: Live }>;
/** The aggregator options the table's live settings set. */
type LiveAggregatorOption = Exclude<LiveDef['live'], 'daemon'>;
/**
 * Fails to compile when FlowAggregator.reconfigure() takes an option no setting sets
 * live (or the other way round): the table and the aggregator cannot drift apart.
 */
const liveCoversReconfigure: [keyof ReconfigurableOptions] extends [LiveAggregatorOption] ? true : never =
  true;
void liveCoversReconfigure;

/** Settings a SIGHUP applies at once (SettingDef.live). */
export const LIVE_SETTINGS: ReadonlySet<keyof Config> = new Set(
  SETTINGS.filter((d): d is LiveDef => d.live !== undefined).map((d) => d.key),
);

/** What FlowAggregator.reconfigure() takes from `c`: every live aggregator setting. */
export function aggregationSettings(c: Config): Required<ReconfigurableOptions> {
  const o: Record<string, unknown> = {};
  for (const d of SETTINGS) if (d.live !== undefined && d.live !== 'daemon') o[d.live] = c[d.key];
  return o as Required<ReconfigurableOptions>;
}

/** A shipping row (ship-config.ts) as a setting: Felix's names for Felix's, else FLOWLOGD_* and --kebab. */
function shipSetting([key, name, type, extra = {}]: ShipSettingRow): SettingDef & {
  readonly live: undefined;
} {
  const { felix: isFelix, ...bounds } = extra;
  if (isFelix) return { ...felix(key, name, type), ...bounds };
  const words = name
    .replace(/MB$/, 'Mb')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .split(' ');
  const env = `FLOWLOGD_${words.join('_').toUpperCase()}`;
  return { ...own(key, name, type, env, `--${words.join('-').toLowerCase()}`), ...bounds };
}

const DEFAULTS: Readonly<Partial<Record<keyof Config, unknown>>> = {
  flowLogsFlushIntervalMs: 300_000,
  flowLogsFileEnabled: true,
  flowLogsFileDirectory: '/var/log/calico/flowlogs',
  flowLogsFileMaxFiles: 5,
  flowLogsFileMaxFileSizeMB: 100,
  flowLogsFileAggregationKindForAllowed: 2,
  flowLogsFileAggregationKindForDenied: 1,
  flowLogsFileEnabledForAllowed: true,
  flowLogsFileEnabledForDenied: true,
  flowLogsFileIncludeLabels: true,
  flowLogsFileIncludePolicies: true,
  flowLogsFileIncludeService: true,
  // flowLogsEnableHostEndpoint: depends on metadata, resolved below
  flowLogsEnableNetworkSets: false,
  // The aggregator's own defaults, so a FlowAggregator made without settings agrees.
  flowLogsIdleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
  flowLogsTcpIdleTimeoutMs: DEFAULT_TCP_IDLE_TIMEOUT_MS,
  metadata: null,
  interfaces: DEFAULT_INTERFACES,
  workloadInterfaces: DEFAULT_WORKLOAD_INTERFACES,
  logLevel: 'info',
  stdout: false,
  metricsPort: null,
  metricsAddress: null,
  kubeconfig: null,
  conntrack: true,
  conntrackNetns: null,
  conntrackResyncIntervalMs: 60_000,
  dropTracing: true,
  ...SHIP_DEFAULTS,
  flowMapSize: DEFAULT_FLOW_MAP_SIZE,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  // Off for a plain daemon (no bpffs assumed, nothing written outside the log directory);
  // the DaemonSet sets both (README, "Restarts").
  bpfPinDirectory: null,
  stateDirectory: null,
  // The journal grows 128 B a drained record: at the 5-minute flush, 384 MB for 10k active
  // connections, 3.8 GB for 100k (BENCHMARKS.md, drain journal). 512 MB holds a whole
  // interval up to ~13k, and keeps a node's disk from filling past that.
  stateDirectoryMaxSizeMB: 512,
};

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

export interface LoadConfigInput {
  /** Arguments of `flowlogd run` (without node, script and subcommand). */
  readonly argv?: readonly string[];
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Config file path, or its path and text (tests); `--config`/`FLOWLOGD_CONFIG` win. */
  readonly file?: string | { readonly path: string; readonly text: string };
  /** For the nodeName default when neither --node-name nor NODENAME is set. */
  readonly hostname?: string;
  /** FelixConfiguration `node.<name>` and `default` from the API, under the file. */
  readonly cluster?: ClusterSettings;
  /** Cluster metadata comes from the API (FlowLogsEnableHostEndpoint then defaults to false). */
  readonly apiMetadata?: boolean;
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Registers every setting as an option of `cmd` (for `flowlogd run --help`). */
export function addConfigOptions(cmd: Command): Command {
  cmd.addOption(new Option('--config <file>', 'FelixConfiguration-style YAML file (env FLOWLOGD_CONFIG)'));
  for (const d of SETTINGS) {
    const arg = d.type === 'bool' ? '[bool]' : `<${d.type === 'globs' ? 'globs' : d.type}>`;
    const def = DEFAULTS[d.key];
    const shown =
      d.key === 'flowLogsEnableHostEndpoint'
        ? 'true without cluster metadata, else false'
        : d.key === 'nodeName'
          ? '$NODENAME, else the hostname'
          : def === undefined || def === null
            ? 'none'
            : Array.isArray(def)
              ? def.join(',')
              : d.type === 'duration'
                ? `${Number(def) / 1000}s`
                : String(def);
    cmd.addOption(new Option(`${d.flag} ${arg}`, `${d.name} (env ${d.env}; default ${shown})`));
  }
  return cmd;
}

function parseArgv(argv: readonly string[], problems: string[]): Record<string, unknown> {
  const cmd = addConfigOptions(new Command('run'))
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} })
    .allowExcessArguments(false)
    .helpOption(false);
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) problems.push(`${err.message.replace(/^error: /, '')} (command line)`);
    else throw err;
    return {};
  }
  return cmd.opts();
}

function attrName(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function loadConfig(input: LoadConfigInput = {}): Config {
  const env = input.env ?? {};
  const problems: string[] = [];
  const warnings: string[] = [];
  const values = new Map<keyof Config, unknown>();
  const sources: Record<string, SourceName> = {};

  const cli = parseArgv(input.argv ?? [], problems);

  // File: --config > FLOWLOGD_CONFIG > input.file.
  let filePath: string | null = null;
  let fileText: string | null = null;
  if (typeof cli.config === 'string') filePath = cli.config;
  else if (env.FLOWLOGD_CONFIG) filePath = env.FLOWLOGD_CONFIG;
  else if (typeof input.file === 'string') filePath = input.file;
  else if (input.file !== undefined) {
    filePath = input.file.path;
    fileText = input.file.text;
  }
  let spec: Record<string, unknown> = {};
  if (filePath !== null) {
    try {
      fileText ??= readFileSync(filePath, 'utf8');
      spec = fileSpec(parseYaml(fileText), filePath, problems, warnings);
    } catch (err) {
      problems.push(`config file ${filePath}: ${(err as Error).message}`);
    }
  }

  const fileKeys = new Set(SETTINGS.map((d) => d.fileKey));
  for (const k of Object.keys(spec)) {
    if (fileKeys.has(k)) continue;
    if (/^flowLogs/i.test(k)) problems.push(`spec.${k} (file ${filePath}): unknown flow logs setting`);
    else warnings.push(`spec.${k} (file ${filePath}): not used by flowlogd, ignored`);
  }
  const envNames = new Set(SETTINGS.map((d) => d.env));
  for (const k of Object.keys(env)) {
    if (/^FELIX_FLOWLOGS/.test(k) && !envNames.has(k))
      problems.push(`${k} (environment): unknown flow logs setting`);
  }

  for (const d of SETTINGS) {
    const attempts: [SourceName, unknown, string][] = [];
    const c = cli[attrName(d.flag)];
    if (c !== undefined)
      attempts.push(['command line', c === true && d.type === 'bool' ? 'true' : c, d.flag]);
    const e = env[d.env];
    if (e !== undefined && e !== '') attempts.push(['environment', e, d.env]);
    if (spec[d.fileKey] !== undefined && spec[d.fileKey] !== null) {
      attempts.push(['file', spec[d.fileKey], `spec.${d.fileKey}`]);
    }
    for (const layer of [input.cluster?.node, input.cluster?.default]) {
      const v = layer?.spec[d.fileKey];
      if (layer && v !== undefined && v !== null) {
        attempts.push([`FelixConfiguration ${layer.name}`, v, `spec.${d.fileKey}`]);
      }
    }
    // Validate every source given (a bad lower-precedence value is still an error:
    // it would bite as soon as the higher one is removed), use the highest.
    let chosen = false;
    for (const [source, raw, label] of attempts) {
      const r = convert(d, raw, source);
      if (!r.ok) {
        const where = source === 'file' ? `file ${filePath}` : source;
        problems.push(`${label}=${show(raw)} (${where}): ${r.why}`);
      } else if (!chosen) {
        values.set(d.key, r.value);
        sources[d.key] = source;
        chosen = true;
      }
    }
    if (!chosen && !values.has(d.key) && DEFAULTS[d.key] !== undefined) {
      values.set(d.key, DEFAULTS[d.key]);
      sources[d.key] = 'default';
    }
  }

  if (!values.has('nodeName')) {
    values.set('nodeName', input.hostname ?? hostname());
    sources.nodeName = 'default';
  }
  if (!values.has('flowLogsEnableHostEndpoint')) {
    values.set('flowLogsEnableHostEndpoint', values.get('metadata') === null && !input.apiMetadata);
    sources.flowLogsEnableHostEndpoint = 'default';
  }

  if (problems.length > 0) throw new ConfigError(problems);
  const config = Object.fromEntries(values) as Record<string, unknown>;
  config.configFile = filePath;
  config.sources = Object.freeze(sources);
  config.warnings = Object.freeze(warnings);
  return Object.freeze(config) as unknown as Config;
}

function fileSpec(
  doc: unknown,
  path: string,
  problems: string[],
  warnings: string[],
): Record<string, unknown> {
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    problems.push(`config file ${path}: must be a FelixConfiguration mapping`);
    return {};
  }
  const d = doc as Record<string, unknown>;
  if (d.kind !== undefined && d.kind !== 'FelixConfiguration') {
    problems.push(`kind=${show(d.kind)} (file ${path}): must be FelixConfiguration`);
    return {};
  }
  if (
    d.apiVersion !== undefined &&
    !/^(projectcalico\.org|crd\.projectcalico\.org)\/v\d+$/.test(String(d.apiVersion))
  ) {
    warnings.push(`apiVersion=${show(d.apiVersion)} (file ${path}): expected projectcalico.org/v3`);
  }
  if (d.spec === undefined || d.spec === null) return {};
  if (typeof d.spec !== 'object' || Array.isArray(d.spec)) {
    problems.push(`spec (file ${path}): must be a mapping`);
    return {};
  }
  return d.spec as Record<string, unknown>;
}
