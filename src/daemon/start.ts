// The heavy steps of Daemon.start, in the order it runs them: the metadata source with the
// endpoint resolver, policy engine and aggregator it feeds; the state directories and the
// previous run's drain journal; the datapath, and the journal's replay into it; the
// datapath's events in the log. Daemon.start sequences them and unwinds on failure.
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FlowAggregator } from '../aggregate/aggregator.ts';
import { makeDirectory } from '../common/make-directory.ts';
import { DEFAULT_DRAIN_INTERVAL_MS } from '../datapath/datapath.ts';
import { type JournalReplay, readJournal } from '../datapath/journal.ts';
import { EndpointResolver } from '../enrich/resolver.ts';
import { EmptyMetadataSource, FileMetadataSource } from '../enrich/source.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { aggregationSettings, type Config } from './config.ts';
import type { DaemonOptions } from './daemon.ts';
import { type DaemonDatapath, kernelDatapath, openDatapath } from './datapath.ts';

/** The metadata source the daemon runs on (a Kubernetes one says when it has synced). */
export type StartSource = NonNullable<DaemonOptions['metadataSource']>;

/** Every address of this host, for host-endpoint resolution. */
function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined)
    .map((a) => a.address);
}

/**
 * The metadata source (given, else the --metadata file, else none), started: its first
 * snapshot is in the resolver and the policy engine before the aggregator exists.
 */
export async function startPipeline(
  opts: DaemonOptions,
  startMs: number,
): Promise<{ source: StartSource; aggregator: FlowAggregator }> {
  const { config: c, logger: log } = opts;
  const source: StartSource =
    opts.metadataSource ??
    (c.metadata
      ? new FileMetadataSource(c.metadata, { logger: log.child({ component: 'metadata' }) })
      : new EmptyMetadataSource());
  const resolver = new EndpointResolver({
    nodeName: c.nodeName,
    nodeIps: hostAddresses(),
    hostEndpoints: c.flowLogsEnableHostEndpoint,
    networkSets: c.flowLogsEnableNetworkSets,
    historyMs: 2 * c.flowLogsFlushIntervalMs,
  });
  // Policies come with the same metadata; one snapshot updates endpoints and policies together.
  const policy = new PolicyEngine({ nodeName: c.nodeName });
  const policyLog = log.child({ component: 'policy' });
  // A stop during the start: the metadata source stops waiting for its file.
  opts.signal?.addEventListener('abort', () => source.close(), { once: true });
  // A batching source says when its first change happened: the IP history records when
  // an IP changed hands, not when the batch arrived.
  await source.start((md, atMs) => {
    resolver.update(md, atMs ?? Date.now());
    const warnings = policy.update(md, c.metadata ?? 'metadata');
    if (warnings.length > 0)
      policyLog.warn({ warnings: warnings.slice(0, 20), count: warnings.length }, 'policy warnings');
    policyLog.debug(
      { policies: policy.model.policyCount, staged: policy.model.stagedCount },
      'policies loaded',
    );
  });
  const aggregator = new FlowAggregator({
    nodeName: c.nodeName,
    resolver,
    policy,
    startTimeMs: startMs,
    ...aggregationSettings(c),
    hostEndpoints: c.flowLogsEnableHostEndpoint,
    workloadInterfaces: c.workloadInterfaces,
    maxConnections: c.maxConnections,
    onLifecycleSource: (source) =>
      log.info(
        { lifecycle: source },
        source === 'conntrack'
          ? 'connection lifecycle from conntrack NEW/DESTROY events'
          : 'connection lifecycle from TCP flags and idle timeouts (until conntrack events arrive, if they do)',
      ),
  });
  return { source, aggregator };
}

/** The drain journal's directory (StateDirectory/journal) and what a previous run left in it. */
export interface JournalState {
  journalDir: string | null;
  journal: JournalReplay | null;
}

/**
 * BpfPinDirectory and StateDirectory made, and a previous run's drained but unflushed
 * counts (README, "Restarts") read: before the datapath opens, which needs to know the
 * last cycle they hold. A directory that cannot be made fails naming its setting.
 */
export async function openState(c: Config): Promise<JournalState> {
  let journalDir: string | null = null;
  let journal: JournalReplay | null = null;
  let setting = 'BpfPinDirectory';
  try {
    if (c.bpfPinDirectory !== null) await makeDirectory(c.bpfPinDirectory);
    setting = 'StateDirectory';
    if (c.stateDirectory !== null) {
      journalDir = join(c.stateDirectory, 'journal');
      await makeDirectory(journalDir);
      journal = readJournal(journalDir);
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw Object.assign(new Error(`${setting}: ${e.message}`, { cause: err }), {
      code: e.code,
      errno: e.errno,
    });
  }
  return { journalDir, journal };
}

/** The datapath (given factory, else the eBPF programs), feeding the aggregator; `newWork` after each update. */
export function openDaemonDatapath(
  opts: DaemonOptions,
  aggregator: FlowAggregator,
  state: JournalState,
  newWork: () => void,
): DaemonDatapath {
  const c = opts.config;
  return openDatapath(
    opts.datapath ?? kernelDatapath,
    {
      interfaces: [...c.interfaces],
      drainIntervalMs: Math.min(opts.drainIntervalMs ?? DEFAULT_DRAIN_INTERVAL_MS, c.flowLogsFlushIntervalMs),
      conntrackEvents: c.conntrack,
      conntrackNetns: c.conntrackNetns ?? '',
      conntrackResyncMs: c.conntrackResyncIntervalMs,
      dropTracing: c.dropTracing,
      maxFlows: c.flowMapSize,
      pinDirectory: c.bpfPinDirectory ?? '',
      journalDirectory: state.journalDir ?? '',
      journalLastGeneration: state.journal?.lastGeneration ?? -1,
      journalMaxBytes: c.stateDirectoryMaxSizeMB * 1024 * 1024,
    },
    (u) => {
      aggregator.observe(u);
      newWork();
    },
    (e) => aggregator.observeConntrack(e),
    opts.logger,
  );
}

/**
 * The journal replayed first: before this run's own drains (the addon's first is a
 * second away). Logs the pin directory's notes and what the replay found.
 */
export function replayJournal(datapath: DaemonDatapath, state: JournalState, c: Config, log: Logger): void {
  const { journal, journalDir } = state;
  const replayed = journal !== null ? (datapath.replay?.(journal.records) ?? 0) : 0;
  for (const note of datapath.pinNotes?.() ?? [])
    (note.startsWith('made new') ? log.warn.bind(log) : log.info.bind(log))(
      { pinDirectory: c.bpfPinDirectory },
      note,
    );
  if (journal !== null && (journal.segments.length > 0 || replayed > 0)) {
    const { cycles, corrupt, truncatedBytes, missing, incomplete, segments } = journal;
    (corrupt + missing + truncatedBytes > 0 ? log.warn.bind(log) : log.info.bind(log))(
      {
        journal: journalDir,
        replayed,
        cycles,
        corrupt,
        missing,
        truncatedBytes,
        incomplete,
        segments: segments.length,
      },
      'replayed the drain journal of the previous run (counts it drained but never flushed)',
    );
  }
}

/** The datapath's interface and error events, in the log. */
export function logDatapathEvents(datapath: DaemonDatapath, log: Logger): void {
  datapath.on('attached', (e) => log.info({ interface: e.name, mode: e.mode }, 'attached'));
  datapath.on('detached', (e) => log.info({ interface: e.name }, 'detached'));
  datapath.on('attach-failed', (e) =>
    log.warn({ interface: e.name, errno: e.errno }, e.message ?? 'attach failed'),
  );
  datapath.on('leftover-unchecked', (e) =>
    log.warn({ interface: e.name }, e.message ?? 'leftover filters could not be checked'),
  );
  datapath.on('datapath-error', (e) => log.error({ errno: e.errno }, e.message ?? 'datapath error'));
  datapath.on('conntrack-overrun', (e) =>
    log.warn({ errno: e.errno }, e.message ?? 'conntrack events lost: resyncing'),
  );
  datapath.on('journal-full', (e) => log.warn(e.message ?? 'the drain journal is full'));
}
