// One list + watch of one Kubernetes resource, on @kubernetes/client-node's ListWatch.
//
// What the library already does (read in node_modules/@kubernetes/client-node/dist
// cache.js and watch.js, version 2.x), and is used as it is:
// - the watch resumes from the last resourceVersion it saw (events and bookmarks);
// - `410 Gone` as the HTTP status or as an ERROR event inside a 200 watch clears the
//   resourceVersion, so the next round relists, and the relist reconciles its cache:
//   objects missing from the new list get a delete callback, changed ones an update,
//   unchanged ones (same resourceVersion) nothing, so nothing is applied twice;
// - a watch that the server ends cleanly reconnects, with a growing delay while it
//   receives nothing (1 s doubling to 30 s), and a quiet watch is cut after 30 s of
//   silence and resumed at once.
// What it lacks, and is added here:
// - bookmarks: it never asks for them (`allowWatchBookmarks`), so a quiet resource
//   falls behind the server's history and ends in a full relist; and it sets no
//   server-side `timeoutSeconds` (client-go spreads them over 5–10 min);
// - jitter: its reconnect delay is the same on every node, so a restarted API server
//   gets every DaemonSet pod back at the same instant;
// - any other error (a dropped connection, a refused connect, 401/403/5xx, a failed
//   list) stops the ListWatch for good after calling the error callback: restarting
//   is the caller's job. Here it restarts with full-jitter exponential backoff;
// - a resource the cluster does not serve (404: a CRD not installed) is logged once and
//   reported as not served, never fatal; alternatives (a v3 API group) are tried in
//   order, and it looks again now and then in case the CRD is installed later;
// - the cache keeps the library's whole objects; here every object is converted to its
//   slim form (only the fields flowlogd reads) before the cache sees it, and the list is
//   read in pages (`limit`/`continue`) so a 50,000-pod list is never one buffer;
// - a ListWatch stopped while its list is in flight still opens its watch afterwards,
//   and one stopped while its watch connects leaves that watch open: here neither;
// - "synced once" for readiness.

import {
  type KubeConfig,
  type KubernetesObject,
  ListWatch,
  RequestContext,
  HttpMethod as RequestMethod,
  Watch,
} from '@kubernetes/client-node';
import { fetch } from 'undici';
import type { Logger } from './source.ts';

/** What the cache keeps of one object: its identity and its slim value. */
export interface Slim<T> extends KubernetesObject {
  readonly metadata: { name: string; namespace?: string; resourceVersion?: string };
  readonly value: T;
}

/** One resource to list and watch. The table of these is in k8s-kinds.ts. */
export interface ResourceSpec<T> {
  /** For logs and metrics, e.g. `pods`, `networksets`. */
  readonly name: string;
  /** Kind of its objects (list items carry none), e.g. `Pod`. */
  readonly kind: string;
  /** Collection paths in order of preference; the first one served is used. */
  readonly paths: readonly string[];
  /**
   * The slim form of one object, or null to leave it out (then it is as if deleted).
   * Field problems go to `warnings`, naming `where`.
   */
  readonly slim: (obj: unknown, where: string, warnings: string[]) => T | null;
}

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions {
  readonly logger: Logger;
  /** Called for every applied change, with the slim old value on delete. */
  readonly onChange: (event: InformerEvent, obj: Slim<unknown>) => void;
  /** Called once, when the first list has been applied (or the resource is found not served). */
  readonly onSynced?: () => void;
  /** Page size of lists; default 500 (kubectl's). */
  readonly pageSize?: number;
  /** Backoff after an error: first delay and cap, ms; default 1000 and 30000. */
  readonly backoffMs?: readonly [number, number];
  /** How often a resource found not served is looked for again; default 300 s. */
  readonly notServedRetryMs?: number;
  /** Server-side watch timeout range, seconds; default [300, 600] as client-go. */
  readonly watchTimeoutSeconds?: readonly [number, number];
  /** Injected for tests: random in [0, 1). */
  readonly random?: () => number;
}

export interface InformerStats {
  readonly path: string | null;
  readonly served: boolean | null;
  readonly synced: boolean;
  readonly objects: number;
  readonly lists: number;
  readonly watches: number;
  readonly events: number;
  readonly bookmarks: number;
  readonly errors: number;
}

class HttpError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function statusOf(err: unknown): number | null {
  if (!isObj(err)) return null;
  const s = err.statusCode ?? err.code;
  return typeof s === 'number' ? s : null;
}

export class ResourceInformer<T> {
  readonly #kc: KubeConfig;
  readonly #spec: ResourceSpec<T>;
  readonly #opts: InformerOptions;
  readonly #log: Logger;
  #pathIndex = 0;
  #lw: ListWatch<Slim<T>> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #failures = 0;
  #stopped = false;
  #synced = false;
  #served: boolean | null = null;
  #warnedNotServed = false;
  readonly #counters = { lists: 0, watches: 0, events: 0, bookmarks: 0, errors: 0 };

  constructor(kc: KubeConfig, spec: ResourceSpec<T>, opts: InformerOptions) {
    this.#kc = kc;
    this.#spec = spec;
    this.#opts = opts;
    this.#log = opts.logger;
  }

  get name(): string {
    return this.#spec.name;
  }

  /** The first list has been applied, or the resource is not served (nothing to wait for). */
  get synced(): boolean {
    return this.#synced;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  start(): void {
    this.#stopped = false;
    this.#open();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    void this.#lw?.stop();
  }

  /** Slim values of every object in the cache. */
  values(): T[] {
    const lw = this.#lw;
    if (lw === null || this.#served !== true) return [];
    return lw.list().map((o) => o.value);
  }

  stats(): InformerStats {
    return {
      path: this.#served ? (this.#spec.paths[this.#pathIndex] ?? null) : null,
      served: this.#served,
      synced: this.#synced,
      objects: this.#lw?.list().length ?? 0,
      ...this.#counters,
    };
  }

  #markSynced(): void {
    if (this.#synced) return;
    this.#synced = true;
    this.#opts.onSynced?.();
  }

  #open(): void {
    if (this.#stopped) return;
    const path = this.#spec.paths[this.#pathIndex]!;
    const lw = new ListWatch<Slim<T>>(
      path,
      new SlimWatch(this.#kc, this, path),
      () => this.#list(path),
      false,
      undefined,
      undefined,
      // The library's own reconnect delay, with full jitter.
      { delayFn: (ms) => new Promise((r) => setTimeout(r, Math.round(ms * this.#random())).unref()) },
    );
    lw.on('add', (o) => this.#opts.onChange('add', o));
    lw.on('update', (o) => this.#opts.onChange('update', o));
    lw.on('delete', (o) => this.#opts.onChange('delete', o));
    lw.on('error', (err) => this.#onError(lw, err));
    this.#lw = lw;
    void lw.start();
  }

  #random(): number {
    return (this.#opts.random ?? Math.random)();
  }

  #onError(lw: ListWatch<Slim<T>>, err: unknown): void {
    if (this.#stopped || lw !== this.#lw) return;
    this.#counters.errors++;
    const status = statusOf(err);
    if (status === 404 && this.#served !== true) {
      // Not served at this path: try the next one; with none left, report it once and
      // look again later (a CRD can be installed after flowlogd started).
      if (this.#pathIndex + 1 < this.#spec.paths.length) {
        this.#pathIndex++;
        this.#open();
        return;
      }
      this.#served = false;
      if (!this.#warnedNotServed) {
        this.#warnedNotServed = true;
        this.#log.warn(
          { resource: this.#spec.name, paths: this.#spec.paths },
          'resource not served by this cluster (404); skipped',
        );
      }
      this.#pathIndex = 0;
      this.#markSynced();
      this.#retry(this.#opts.notServedRetryMs ?? 300_000);
      return;
    }
    if (status === 404) {
      // Served before, gone now (CRD deleted): its objects are gone too.
      this.#log.warn({ resource: this.#spec.name }, 'resource no longer served (404); its objects removed');
      for (const o of lw.list()) this.#opts.onChange('delete', o);
      this.#served = null;
      this.#lw = null;
      this.#pathIndex = 0;
      this.#retry(this.#opts.notServedRetryMs ?? 300_000);
      return;
    }
    const [base, cap] = this.#opts.backoffMs ?? [1000, 30_000];
    const ceiling = Math.min(cap, base * 2 ** Math.min(this.#failures, 16));
    this.#failures++;
    const delay = Math.round(ceiling * this.#random());
    const msg = err instanceof Error ? err.message : String(err);
    const fields = { resource: this.#spec.name, status, err: msg, retryInMs: delay };
    if (status === 401 || status === 403) this.#log.error(fields, 'API server refused the request');
    else this.#log.warn(fields, 'list/watch failed; retrying');
    this.#timer = setTimeout(() => {
      this.#timer = null;
      // Resumes from the last resourceVersion; relists only if it was cleared (410).
      if (!this.#stopped && lw === this.#lw) void lw.start();
    }, delay);
    this.#timer.unref();
  }

  #retry(ms: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#lw?.stop();
      this.#open();
    }, ms);
    this.#timer.unref();
  }

  /** Called by SlimWatch when a watch starts: the list before it has been applied. */
  watchStarted(): void {
    this.#counters.watches++;
    if (this.#served !== true) {
      if (this.#served === false) this.#log.info({ resource: this.#spec.name }, 'resource now served');
      this.#served = true;
    }
    this.#markSynced();
  }

  /** Called by SlimWatch for every event of a running watch. */
  watchEvent(type: string): void {
    if (type === 'BOOKMARK') this.#counters.bookmarks++;
    else if (type !== 'ERROR') {
      this.#counters.events++;
      this.#failures = 0;
    }
  }

  /** Converts a raw object to what the cache keeps; null (left out) when the spec drops it. */
  toSlim(raw: unknown, where: string, warnings: string[]): Slim<T> | null {
    if (!isObj(raw) || !isObj(raw.metadata) || typeof raw.metadata.name !== 'string') return null;
    const value = this.#spec.slim(raw, where, warnings);
    if (value === null) return null;
    const md = raw.metadata;
    return {
      metadata: {
        name: md.name as string,
        namespace: typeof md.namespace === 'string' ? md.namespace : undefined,
        resourceVersion: typeof md.resourceVersion === 'string' ? md.resourceVersion : undefined,
      },
      value,
    };
  }

  #warn(warnings: string[]): void {
    if (warnings.length === 0) return;
    this.#log.warn(
      { resource: this.#spec.name, warnings: warnings.slice(0, 20), count: warnings.length },
      'object fields ignored',
    );
  }

  /** One full list, page by page, each page converted to slim objects before the next is read. */
  async #list(path: string): Promise<{ metadata: { resourceVersion?: string }; items: Slim<T>[] }> {
    this.#counters.lists++;
    const cluster = this.#kc.getCurrentCluster();
    if (cluster === null) throw new Error('kubeconfig has no current cluster');
    const limit = this.#opts.pageSize ?? 500;
    const items: Slim<T>[] = [];
    const warnings: string[] = [];
    let token = '';
    let resourceVersion: string | undefined;
    for (;;) {
      const url = new URL(cluster.server.replace(/\/$/, '') + path);
      url.searchParams.set('limit', String(limit));
      if (token !== '') url.searchParams.set('continue', token);
      const ctx = new RequestContext(url.toString(), RequestMethod.GET);
      await this.#kc.applySecurityAuthentication(ctx);
      const res = await fetch(url, { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher() });
      if (res.status !== 200) {
        const text = await res.text().catch(() => '');
        let message = text.slice(0, 200);
        try {
          const s = JSON.parse(text) as Obj;
          if (typeof s.message === 'string') message = s.message;
        } catch {
          // not a Status object
        }
        if (res.status === 410 && token !== '') {
          // The continue token expired mid-list: start the list again.
          items.length = 0;
          token = '';
          continue;
        }
        throw new HttpError(res.status, `list ${path}: HTTP ${res.status}: ${message}`);
      }
      const page = (await res.json()) as Obj;
      const md = isObj(page.metadata) ? page.metadata : {};
      if (Array.isArray(page.items)) {
        for (const raw of page.items) {
          const name = isObj(raw) && isObj(raw.metadata) ? raw.metadata.name : undefined;
          const s = this.toSlim(raw, `${this.#spec.kind} ${String(name)}`, warnings);
          if (s !== null) items.push(s);
        }
      }
      if (typeof md.resourceVersion === 'string') resourceVersion = md.resourceVersion;
      token = typeof md.continue === 'string' ? md.continue : '';
      if (token === '') break;
    }
    this.#warn(warnings);
    this.#failures = 0;
    return { metadata: { resourceVersion }, items };
  }

  /** Warnings of one watch event's conversion. */
  warn(warnings: string[]): void {
    this.#warn(warnings);
  }

  watchTimeoutSeconds(): number {
    const [lo, hi] = this.#opts.watchTimeoutSeconds ?? [300, 600];
    return Math.round(lo + (hi - lo) * this.#random());
  }
}

/**
 * The library's Watch, asking for bookmarks and a server-side timeout, and handing the
 * ListWatch slim objects instead of whole ones.
 */
class SlimWatch<T> extends Watch {
  readonly #informer: ResourceInformer<T>;
  readonly #path: string;

  constructor(kc: KubeConfig, informer: ResourceInformer<T>, path: string) {
    super(kc);
    this.#informer = informer;
    this.#path = path;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const informer = this.#informer;
    if (informer.stopped) {
      // ListWatch checks for stop() before its list but not after it: a source closed
      // during a list would otherwise open a watch nobody stops.
      const c = new AbortController();
      c.abort();
      return c;
    }
    informer.watchStarted();
    const params = {
      ...queryParams,
      allowWatchBookmarks: true,
      timeoutSeconds: informer.watchTimeoutSeconds(),
    };
    const controller = await super.watch(
      path === '' ? this.#path : path,
      params,
      (phase, obj, watchObj) => {
        informer.watchEvent(phase);
        if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
          const warnings: string[] = [];
          const s = informer.toSlim(obj, `${phase} ${this.#path}`, warnings);
          informer.warn(warnings);
          if (s === null) {
            // Dropped by the slim form (e.g. without a name): for the cache, a delete.
            if (isObj(obj) && isObj(obj.metadata) && typeof obj.metadata.name === 'string') {
              callback('DELETED', obj, watchObj);
            }
            return;
          }
          callback(phase, s, watchObj);
          return;
        }
        callback(phase, obj, watchObj); // BOOKMARK, ERROR: as they are
      },
      done,
    );
    // ListWatch.stop() aborts only a watch whose response has arrived; one stopped while
    // connecting would stay open for good.
    if (informer.stopped) controller.abort();
    return controller;
  }
}
