// `flowlogd run`: datapath -> enrichment -> policy -> aggregation -> sinks, every flush interval.
// Flushes never overlap; SIGTERM/SIGINT detach, drain the kernel and write a final flush;
// SIGHUP re-reads the settings and the metadata.
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FlowAggregator } from '../aggregate/aggregator.ts';
import { returnFreedMemory } from '../common/memory.ts';
import { removeSegments } from '../datapath/journal.ts';
import type { MetadataSource } from '../enrich/source.ts';
import { LINE_BATCH_BYTES, LINE_BATCH_LINES, LineBatchBuilder } from '../export/batch.ts';
import { DynamicAggregation, positionFileBacklog } from '../export/dynamic.ts';
import { NetworkSink } from '../export/network.ts';
import { FanoutSink, type Sink } from '../export/sink.ts';
import { within, writeInBatches } from '../export/write.ts';
import { aggregationSettings, type Config, LIVE_SETTINGS } from './config.ts';
import { type DaemonDatapath, type DatapathFactory, kernelDatapath } from './datapath.ts';
import { Health } from './health.ts';
import { type FlushMetrics, type MetricSources, registerMetrics, serveMetrics } from './metrics.ts';
import { Registry } from './prom.ts';
import { registerShipMetrics } from './ship-metrics.ts';
import { dynamicSettings, openSinks } from './sinks-open.ts';
import {
  type JournalState,
  logDatapathEvents,
  openDaemonDatapath,
  openState,
  replayJournal,
  startPipeline,
} from './start.ts';

/** How often the daemon builds new connections' record keys between flushes, and for how long at most. */
const PREPARE_EVERY_MS = 250;
const PREPARE_BUDGET_MS = 20;

/** Longest wait for the sinks per chunk of an interval before moving on. */
const SINK_FLUSH_TIMEOUT_MS = 5000;
/** How long exit waits for the sinks to finish the final flush before dropping (counted) what they hold. */
const EXIT_SINK_DEADLINE_MS = 5000;

export interface DaemonOptions {
  config: Config;
  logger: Logger;
  /** Drain interval of the kernel map (the flush interval bounds it from above). */
  drainIntervalMs?: number;
  /** Where the datapath comes from (default: the eBPF programs through the addon). */
  datapath?: DatapathFactory;
  /** The sinks to write to (default: flows.log and stdout as the config says). */
  sinks?: readonly Sink[];
  /** Aborted by a stop signal during the start: the start unwinds (AbortError) and undoes what it did. */
  signal?: AbortSignal;
  /**
   * Where cluster metadata comes from (the Kubernetes API source); default: the
   * --metadata file, else none. A source with `synced` gates /readyz until it is true.
   */
  metadataSource?: MetadataSource & { readonly synced?: boolean };
  /** More /readyz conditions (the FelixConfiguration watcher's sync): null when ready. */
  readiness?: readonly { readonly name: string; readonly check: () => string | null }[];
  /** The Kubernetes informers' stats, for metrics. */
  kubernetes?: MetricSources['kubernetes'];
}

export class Daemon {
  readonly #log: Logger;
  #config: Config;
  readonly #source: MetadataSource;
  readonly #aggregator: FlowAggregator;
  readonly #datapath: DaemonDatapath;
  readonly #releaseFreeMemory: () => unknown;
  readonly #sink: FanoutSink;
  /** Encodes each flush's lines; its working buffer is reused from flush to flush. */
  readonly #batches = new LineBatchBuilder(LINE_BATCH_BYTES, LINE_BATCH_LINES);
  readonly #registry = new Registry();
  #inFlush = false;
  #skippedFlushes = 0;
  /** The last flush found a sink that did not keep up within its budget. */
  #sinkStalled = false;
  readonly #metrics: FlushMetrics;
  #metricsServer: Server | null = null;
  /** /livez and /readyz on the metrics port. */
  readonly health = new Health();
  #timer: NodeJS.Timeout | null = null;
  /** The period #timer runs at, and how many flushes ran: logged with each flush. */
  #timerMs = 0;
  #flushSeq = 0;
  /** Builds new connections' record keys between flushes (FlowAggregator.prepareKeys). */
  #prepareTimer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | null = null;
  /** The network sinks among the sinks (their backlog drives dynamic aggregation). */
  #network: NetworkSink[] = [];
  /** FlowLogsDynamicAggregationEnabled: null when off. */
  #dynamic: DynamicAggregation | null = null;
  /** Said once: policies deny delivered traffic and the kernel never dropped by policy. */
  #saidNoEnforcer = false;
  /** The drain journal's directory (StateDirectory/journal), or null. */
  #journalDir: string | null = null;

  private constructor(
    opts: DaemonOptions,
    source: MetadataSource,
    aggregator: FlowAggregator,
    datapath: DaemonDatapath,
    sink: FanoutSink,
  ) {
    this.#config = opts.config;
    this.#log = opts.logger;
    this.#source = source;
    this.#aggregator = aggregator;
    this.#datapath = datapath;
    this.#releaseFreeMemory = (opts.datapath ?? kernelDatapath).releaseFreeMemory;
    this.#sink = sink;
    this.#metrics = registerMetrics(this.#registry, {
      datapath,
      aggregator,
      sink,
      kubernetes: opts.kubernetes,
    });
  }

  /** Loads metadata, attaches the datapath, opens the sinks and starts flushing (steps in start.ts). */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const { config: c, logger: log } = opts;
    const startMs = Date.now();
    const { source, aggregator } = await startPipeline(opts, startMs);
    const abort = opts.signal;
    abort?.throwIfAborted();
    const sinks = opts.sinks ?? (await openSinks(c, log));
    const sink = new FanoutSink(sinks);
    if (abort?.aborted) {
      source.close();
      await sink.close();
      abort.throwIfAborted();
    }
    let state: JournalState;
    try {
      state = await openState(c);
    } catch (err) {
      source.close();
      await sink.close();
      throw err;
    }
    let datapath: DaemonDatapath;
    // Arms the key-building timer once the daemon exists (updates can come before).
    let newWork = () => {};
    try {
      datapath = openDaemonDatapath(opts, aggregator, state, () => newWork());
    } catch (err) {
      source.close();
      await sink.close();
      throw err;
    }
    replayJournal(datapath, state, c, log);
    const d = new Daemon(opts, source, aggregator, datapath, sink);
    d.#journalDir = state.journalDir;
    if (abort?.aborted) {
      await d.stop(); // detaches, and writes what was counted meanwhile
      abort.throwIfAborted();
    }
    d.#network = sinks.filter((s) => s instanceof NetworkSink);
    d.#dynamic = c.flowLogsDynamicAggregationEnabled ? new DynamicAggregation(dynamicSettings(c)) : null;
    registerShipMetrics(d.#registry, d.#network, () => d.#dynamic?.level ?? 0);
    logDatapathEvents(datapath, log);
    datapath.on('cycle', () => d.health.cycle());
    d.health.drainMaySleep(() => datapath.stats().drainAsleep === true);
    d.health.readyWhen('datapath', () =>
      datapath.interfaces().length > 0 ? null : 'attached to no interface yet',
    );
    if (source.synced !== undefined) {
      d.health.readyWhen('metadata', () => (source.synced ? null : 'Kubernetes informers not synced yet'));
    }
    for (const r of opts.readiness ?? []) d.health.readyWhen(r.name, r.check);
    d.health.start();
    log.info(
      {
        node: c.nodeName,
        interfaces: c.interfaces,
        attached: datapath.interfaces().map((i) => i.name),
        attachMode: datapath.attachMode,
        flushIntervalMs: c.flowLogsFlushIntervalMs,
        directory: c.flowLogsFileEnabled ? c.flowLogsFileDirectory : null,
        metadata: c.metadata,
        hostEndpoints: c.flowLogsEnableHostEndpoint,
      },
      'flowlogd started',
    );
    if (c.metricsPort) {
      d.#metricsServer = await serveMetrics(d.#registry, c.metricsPort, c.metricsAddress, log, d.health);
    }
    d.#schedule();
    newWork = () => d.#armPrepare();
    d.#armPrepare();
    // The start's garbage (settings, module loading, libbpf's parse of the kernel's BTF,
    // freed by malloc but kept by it) given back once: otherwise it stays resident until
    // the first flush that writes something, 5 minutes away by default.
    void returnFreedMemory(d.#releaseFreeMemory);
    return d;
  }

  /**
   * Dynamic aggregation, before a flush: the backlog of the slowest network sink and of
   * a Fluentd tailing flows.log sets the level; a new level changes the kinds of this
   * flush on, is logged, and is stamped on every batch shipped from now on.
   */
  #applyDynamic(): void {
    const dyn = this.#dynamic;
    if (dyn === null) return;
    const c = this.#config;
    const backlogs: (number | null)[] = this.#network.map((s) => s.shipStats().spool.backlogBytes);
    if (c.flowLogsFileEnabled)
      backlogs.push(
        positionFileBacklog(c.flowLogsPositionFilePath, join(c.flowLogsFileDirectory, 'flows.log')),
      );
    const change = dyn.update(backlogs);
    if (change !== null) {
      this.#aggregator.reconfigure({ ...aggregationSettings(c), ...dyn.kinds() });
      this.#log.warn(
        { ...change, thresholdBytes: c.flowLogsAggregationThresholdBytes },
        change.level > change.previous
          ? 'shipping backlog: aggregation raised (fewer records, same traffic)'
          : 'shipping backlog drained: aggregation lowered',
      );
    }
    for (const s of this.#network) s.level = dyn.level;
  }

  /**
   * 250 ms after new connections arrive, up to 20 ms of the work a flush would otherwise
   * do for all the connections of its interval at once (BENCHMARKS.md, aggregation),
   * again while some are left. No timer while nothing arrives: an idle daemon sleeps.
   */
  #armPrepare(): void {
    if (this.#prepareTimer !== null || this.#stopping !== null || !this.#aggregator.keysPending) return;
    this.#prepareTimer = setTimeout(() => {
      this.#prepareTimer = null;
      this.#aggregator.prepareKeys(PREPARE_BUDGET_MS);
      this.#armPrepare();
    }, PREPARE_EVERY_MS);
    this.#prepareTimer.unref();
  }

  #schedule(): void {
    if (this.#timer) clearInterval(this.#timer);
    // Not unref'd: this timer is what keeps the daemon running.
    this.#timerMs = this.#config.flowLogsFlushIntervalMs;
    this.#timer = setInterval(() => {
      // Flushes never pile up: one still running (a slow drain) takes this interval's
      // records with its next run, whose interval then spans both.
      if (this.#inFlush) {
        this.#skippedFlushes++;
        this.#log.warn({ skipped: this.#skippedFlushes }, 'flush skipped: the previous one is still running');
        return;
      }
      this.flush().catch((err) => this.#log.error({ err }, 'flush failed'));
    }, this.#config.flowLogsFlushIntervalMs);
  }

  /** Drains the kernel, writes one interval's records. Flushes run one after another. */
  flush(): Promise<void> {
    this.#inFlush = true;
    const run = this.#flushing.then(async () => {
      const t0 = performance.now();
      const endMs = Date.now();
      // With a journal, the interval closes on a whole drain cycle (delivery held until
      // the aggregator has closed it), so the journal segments this flush writes can go.
      const journaled = this.#journalDir !== null;
      const segmentEnd = await this.#datapath.sync(journaled);
      this.#applyDynamic();
      const { records, sinkWaitMs } = await this.#writeInterval(endMs, () => this.#datapath.resume?.());
      // Not while a sink still holds lines in memory (stalled): the next flush that writes
      // everything covers these segments too.
      if (journaled && typeof segmentEnd === 'number' && segmentEnd > 0 && !this.#sinkStalled)
        this.#commitJournal(segmentEnd);
      this.#checkEnforcer();
      const seconds = (performance.now() - t0) / 1000;
      this.#metrics.flushes.inc();
      this.#metrics.flushSeconds.observe(seconds);
      const mem = process.memoryUsage();
      // seq, endMs, intervalMs and sinkWaitMs say which interval this was and what it
      // was allowed to wait for: tests and operators read the schedule from them, not
      // from when the line happened to be logged.
      this.#log.debug(
        {
          seq: ++this.#flushSeq,
          endMs,
          intervalMs: this.#timerMs,
          sinkWaitMs,
          records,
          heapMB: Math.round(mem.heapUsed / 2 ** 20),
          externalMB: Math.round(mem.external / 2 ** 20),
          rssMB: Math.round(mem.rss / 2 ** 20),
          ms: Math.round(seconds * 1000),
        },
        'flushed',
      );
      // A flush that wrote nothing made next to no garbage: no GC for it (an idle
      // daemon's flush would otherwise run a full GC every interval for nothing).
      if (records > 0) void returnFreedMemory(this.#releaseFreeMemory);
    });
    this.#flushing = run.catch(() => {});
    void this.#flushing.then(() => {
      this.#inFlush = false;
    });
    return run;
  }

  /**
   * The verdict cross-check found connections the policies deny but the kernel delivered,
   * and the kernel has never dropped a packet by policy: most likely nothing enforces the
   * policies on this node (no CNI policy engine, or drop tracing cannot see its drops).
   */
  #checkEnforcer(): void {
    if (this.#saidNoEnforcer) return;
    const s = this.#aggregator.stats();
    const delivered = s.policyMismatchIngressKernelAllowed + s.policyMismatchEgressKernelAllowed;
    if (delivered === 0 || (this.#datapath.stats().kernel.dropsPolicy ?? 0) > 0) return;
    this.#saidNoEnforcer = true;
    this.#log.warn(
      { deniedButDelivered: delivered, kernelPolicyDrops: 0 },
      'policies deny connections the kernel delivered, and the kernel has dropped nothing by policy: no policy enforcer seems to run on this node',
    );
  }

  /**
   * The journal segments below `end` are in flows that were written: removed. A crash
   * between the write and this replays that flush once more (at-least-once, README).
   */
  #commitJournal(end: number): void {
    try {
      removeSegments(this.#journalDir!, end);
    } catch (err) {
      this.#log.error({ err, journal: this.#journalDir }, 'could not remove written journal segments');
    }
  }

  /** Closes the interval and hands its lines to the sinks (src/export/write.ts). */
  async #writeInterval(endMs: number, closed?: () => void): Promise<{ records: number; sinkWaitMs: number }> {
    let lines: IterableIterator<string>;
    try {
      lines = this.#aggregator.flushLineIterator(endMs);
    } finally {
      closed?.();
    }
    // A flush waits on a slow sink for at most half an interval, and not at all while a
    // sink that stalled last time still holds lines: its bounded queue takes them at once
    // (drops the oldest, counted). A 5 s wait per flush stretched 2 s intervals to 5 s.
    const budget = Math.min(SINK_FLUSH_TIMEOUT_MS, this.#config.flowLogsFlushIntervalMs / 2);
    const timeoutMs = this.#sinkStalled && !this.#sink.idle() ? 0 : budget;
    const { lines: records, stalled } = await writeInBatches(lines, this.#batches, this.#sink, timeoutMs);
    if (stalled && !this.#sinkStalled)
      this.#log.warn({ timeoutMs }, 'a sink is not keeping up; its bounded queue takes the rest');
    this.#sinkStalled = stalled;
    this.#metrics.lines.inc(records);
    return { records, sinkWaitMs: timeoutMs };
  }

  /**
   * SIGHUP: the settings the SETTINGS table marks live (the flush interval, the
   * aggregation kinds, enabled/include flags and idle timeouts) and the metadata take
   * effect now; every other changed setting is named in a warning and waits for the next
   * start.
   */
  async reload(config: Config): Promise<void> {
    const ignored = new Set(['sources', 'warnings', 'configFile']);
    const later = (Object.keys(config) as (keyof Config)[]).filter(
      (k) =>
        !LIVE_SETTINGS.has(k) &&
        !ignored.has(k) &&
        JSON.stringify(config[k]) !== JSON.stringify(this.#config[k]),
    );
    if (later.length) this.#log.warn({ settings: later }, 'these settings take effect at the next start');
    // The kinds reload; the threshold waits for the next start like the other shipping settings.
    this.#dynamic?.reconfigure({
      ...dynamicSettings(config),
      thresholdBytes: this.#config.flowLogsAggregationThresholdBytes,
    });
    this.#aggregator.reconfigure({ ...aggregationSettings(config), ...this.#dynamic?.kinds() });
    const flushChanged = config.flowLogsFlushIntervalMs !== this.#config.flowLogsFlushIntervalMs;
    this.#config = { ...config, ...Object.fromEntries(later.map((k) => [k, this.#config[k]])) } as Config;
    if (flushChanged) this.#schedule();
    const ok = await this.#source.reload();
    this.#log.info({ metadataAccepted: ok, waitingForRestart: later }, 'reloaded');
  }

  /** The Prometheus text /metrics serves. */
  metricsText(): Promise<string> {
    return this.#registry.metrics();
  }

  /** Detach, drain everything counted, final flush, close the sinks. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.#timer) clearInterval(this.#timer);
      this.#timer = null;
      if (this.#prepareTimer) clearTimeout(this.#prepareTimer);
      this.#prepareTimer = null;
      await this.#flushing;
      const endMs = Date.now();
      await this.#datapath.stop(); // detaches first: nothing is counted after this drain
      const { records } = await this.#writeInterval(endMs);
      // Everything drained is in that flush (the worker has stopped): the journal goes.
      if (this.#journalDir !== null) this.#commitJournal(Number.POSITIVE_INFINITY);
      this.#datapath.close();
      this.#source.close();
      // A stalled sink must not keep the process from exiting: what it still holds is
      // counted as dropped in its stats, logged below.
      if (!(await within(this.#sink.close(), EXIT_SINK_DEADLINE_MS))) {
        this.#log.error(
          { deadlineMs: EXIT_SINK_DEADLINE_MS, held: 'dropped and counted' },
          'a sink did not finish writing the final flush in time',
        );
        this.#sink.abandon();
      }
      this.#metricsServer?.close();
      this.health.stop();
      this.#log.info(
        { records, sinks: this.#sink.statsBySink(), aggregator: this.#aggregator.stats() },
        'final flush written; stopped',
      );
    })();
    return this.#stopping;
  }
}
