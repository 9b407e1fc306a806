// Cluster metadata from the Kubernetes API: one informer per resource of
// METADATA_RESOURCES (k8s-kinds.ts), each keeping slim objects only. Changes are
// coalesced for a short while and delivered as one snapshot, with the time of the first
// change in it, so the resolver's IP history records when an IP changed hands, not when
// the batch was applied.

import type { KubeConfig } from '@kubernetes/client-node';
import {
  type InformerOptions,
  type InformerStats,
  ResourceInformer,
  type ResourceSpec,
} from './informers.ts';
import { METADATA_RESOURCES } from './k8s-kinds.ts';
import { type ClusterMetadata, collectMetadata, type SlimObject } from './kube.ts';
import { type Logger, type MetadataListener, type MetadataSource, silentLogger } from './source.ts';

export interface KubeMetadataSourceOptions {
  readonly logger?: Logger;
  /**
   * Longest wait in start() for every informer's first list; default 30 s. After it
   * flowlogd goes on with what it has (not ready until the rest has synced; what arrives
   * later is delivered as any change): an API server that is down must not keep the
   * daemon from counting, nor from answering its liveness probe.
   */
  readonly syncTimeoutMs?: number;
  /**
   * Changes are delivered this long after the first of them; default 100 ms. Never
   * sooner than 4× the last delivery took, so that under constant churn rebuilding the
   * resolver's tables (~95 ms at 50,000 pods) takes at most a fifth of the main thread.
   */
  readonly coalesceMs?: number;
  readonly resources?: readonly ResourceSpec<SlimObject>[];
  readonly informer?: Partial<Omit<InformerOptions, 'logger' | 'onChange' | 'onSynced'>>;
  readonly now?: () => number;
}

export class KubeMetadataSource implements MetadataSource {
  readonly #kc: KubeConfig;
  readonly #opts: KubeMetadataSourceOptions;
  readonly #log: Logger;
  readonly #informers: ResourceInformer<SlimObject>[] = [];
  #listener: MetadataListener | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Time of the first change not yet delivered; null when none is pending. */
  #pendingSince: number | null = null;
  #started = false;
  #closed = false;
  #onAllSynced: (() => void) | null = null;
  /** How long the last delivery (the listener's resolver update) took, ms. */
  #lastCostMs = 0;
  readonly counters = { changes: 0, deliveries: 0 };

  constructor(kc: KubeConfig, opts: KubeMetadataSourceOptions = {}) {
    this.#kc = kc;
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
  }

  /** Every informer has applied its first list (or found its resource not served). */
  get synced(): boolean {
    return this.#informers.every((i) => i.synced);
  }

  async start(listener: MetadataListener): Promise<void> {
    this.#listener = listener;
    const now = this.#opts.now ?? Date.now;
    for (const spec of this.#opts.resources ?? METADATA_RESOURCES) {
      const inf = new ResourceInformer<SlimObject>(this.#kc, spec, {
        ...this.#opts.informer,
        logger: this.#log,
        onChange: () => {
          this.counters.changes++;
          if (!this.#started) return; // the first snapshot carries the initial lists
          this.#pendingSince ??= now();
          this.#schedule();
        },
        onSynced: () => {
          if (this.synced) this.#onAllSynced?.();
        },
      });
      this.#informers.push(inf);
    }
    const synced = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.#opts.syncTimeoutMs ?? 30_000);
      timer.unref();
      this.#onAllSynced = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    for (const i of this.#informers) i.start();
    const ok = this.#informers.length === 0 || (await synced);
    this.#onAllSynced = () => {
      this.#log.info(this.#summary(), 'Kubernetes metadata synced');
    };
    if (!ok) {
      this.#log.warn(
        { waiting: this.#informers.filter((i) => !i.synced).map((i) => i.name) },
        'Kubernetes API not synced in time; going on with what has arrived',
      );
    } else {
      this.#log.info(this.#summary(), 'Kubernetes metadata synced');
    }
    this.#started = true;
    this.#deliver(Number.NEGATIVE_INFINITY);
  }

  #summary(): Record<string, number | string> {
    const out: Record<string, number | string> = {};
    for (const i of this.#informers) {
      const s = i.stats();
      out[i.name] = s.served === false ? 'not served' : s.objects;
    }
    return out;
  }

  #schedule(): void {
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        const since = this.#pendingSince;
        this.#pendingSince = null;
        if (since !== null) this.#deliver(since);
      },
      Math.min(2000, Math.max(this.#opts.coalesceMs ?? 100, 4 * this.#lastCostMs)),
    );
    this.#timer.unref();
  }

  /** Builds the snapshot now (tests, benchmarks) instead of after the coalescing delay. */
  flushPending(): boolean {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const since = this.#pendingSince;
    this.#pendingSince = null;
    if (since === null) return false;
    this.#deliver(since);
    return true;
  }

  snapshot(): ClusterMetadata {
    const informers = this.#informers;
    return collectMetadata(
      (function* () {
        for (const inf of informers) yield* inf.values();
      })(),
    );
  }

  #deliver(atMs: number): void {
    if (this.#closed) return;
    this.counters.deliveries++;
    const t0 = performance.now();
    this.#listener?.(this.snapshot(), Number.isFinite(atMs) ? atMs : undefined);
    this.#lastCostMs = performance.now() - t0;
  }

  /** SIGHUP: the watches are live; nothing to re-read. */
  async reload(): Promise<boolean> {
    return true;
  }

  stats(): Record<string, InformerStats> {
    return Object.fromEntries(this.#informers.map((i) => [i.name, i.stats()]));
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const i of this.#informers) i.stop();
  }
}
