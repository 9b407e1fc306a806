// Where cluster metadata comes from. A source pushes whole snapshots to one listener; the
// file source re-reads its file when it changes (fs.watch on the directory, because
// editors and `kubectl … > file` replace the file, plus a periodic stat as a fallback for
// filesystems without inotify). The Kubernetes API source (k8s-source.ts) has the same shape.

import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { stat as fsStat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { type ClusterMetadata, EMPTY_METADATA, MetadataParseError } from './kube.ts';
import { DEFAULT_LOAD_LIMITS, type FileLoad, type LoadLimits, loadMetadataFile } from './metadata-load.ts';

/**
 * Receives each new snapshot; `atMs`, when given, is when its first change happened
 * (a source that batches changes), else the change is now.
 */
export type MetadataListener = (md: ClusterMetadata, atMs?: number) => void;

export interface MetadataSource {
  /** Delivers the first snapshot (before resolving) and later ones as they change. Rejects if the first load fails. */
  start(listener: MetadataListener): Promise<void>;
  /** Re-reads now (SIGHUP). Resolves false when the new data was rejected (previous kept). */
  reload(): Promise<boolean>;
  close(): void;
}

/** Minimal logger shape (pino-compatible). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** No cluster metadata: the node's own IPs (resolver options) are the only known endpoint. */
export class EmptyMetadataSource implements MetadataSource {
  async start(listener: MetadataListener): Promise<void> {
    listener(EMPTY_METADATA);
  }
  async reload(): Promise<boolean> {
    return true;
  }
  close(): void {}
}

export interface FileMetadataSourceOptions {
  readonly logger?: Logger;
  /** Stat fallback period; default 5000 ms. 0 disables polling. */
  readonly pollMs?: number;
  /** Use fs.watch as well; default true. */
  readonly watch?: boolean;
  /** The parsing worker's memory cap. */
  readonly limits?: LoadLimits;
  /**
   * A file rewritten in place (same inode) is read once its size and modification time
   * have not changed for this long; default 1000 ms. A file renamed into place (a new
   * inode) is read at once: a rename is how a safe writer says it has finished.
   */
  readonly settleMs?: number;
  /** Longest wait for a file to stop changing before the attempt fails; default 60 s. */
  readonly maxSettleWaitMs?: number;
  /** Injected for tests. */
  readonly stat?: (path: string) => Promise<{ mtimeMs: number; size: number; ino: number }>;
}

export class FileMetadataSource implements MetadataSource {
  readonly #path: string;
  readonly #log: Logger;
  readonly #pollMs: number;
  readonly #useWatch: boolean;
  readonly #limits: LoadLimits;
  readonly #settleMs: number;
  readonly #maxSettleWaitMs: number;
  /** The inode of the file last read: the same one again means it was rewritten in place. */
  #ino: number | null = null;
  /** namespace/name of the pods last delivered, to log what a new file changed. */
  #podKeys = new Set<string>();
  readonly #stat: (path: string) => Promise<{ mtimeMs: number; size: number; ino: number }>;
  #listener: MetadataListener | null = null;
  #watcher: FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  /** sha256 of the last file delivered (the text itself never enters this thread). */
  #lastDigest: string | null = null;
  #lastStat = '';
  #loading: Promise<boolean> | null = null;
  #closed = false;
  /** Counters for metrics. */
  readonly counters = { loads: 0, rejected: 0, unchanged: 0, settleWaits: 0, changedWhileRead: 0 };

  constructor(path: string, opts: FileMetadataSourceOptions = {}) {
    this.#path = path;
    this.#log = opts.logger ?? silentLogger;
    this.#pollMs = opts.pollMs ?? 5000;
    this.#useWatch = opts.watch ?? true;
    this.#limits = opts.limits ?? DEFAULT_LOAD_LIMITS;
    this.#settleMs = opts.settleMs ?? 1000;
    this.#maxSettleWaitMs = opts.maxSettleWaitMs ?? 60_000;
    this.#stat = opts.stat ?? ((p) => fsStat(p));
  }

  async start(listener: MetadataListener): Promise<void> {
    this.#listener = listener;
    const r = await this.#loadComplete(); // throws on a bad first file
    if (!r.unchanged) this.#deliver(r.file.digest, r.metadata, r.warnings);
    try {
      this.#lastStat = await this.#statKey();
    } catch {
      // polling will notice
    }
    if (this.#useWatch) {
      try {
        const name = basename(this.#path);
        this.#watcher = fsWatch(dirname(this.#path), { persistent: false }, (_event, file) => {
          if (file === null || file === name) this.#schedule();
        });
        this.#watcher.on('error', (err) =>
          this.#log.warn({ err, path: this.#path }, 'metadata watch failed'),
        );
      } catch (err) {
        this.#log.warn({ err, path: this.#path }, 'cannot watch metadata directory; polling only');
      }
    }
    if (this.#pollMs > 0) {
      this.#timer = setInterval(() => void this.#poll(), this.#pollMs);
      this.#timer.unref();
    }
  }

  async #statKey(): Promise<string> {
    const s = await this.#stat(this.#path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  }

  async #poll(): Promise<void> {
    try {
      const key = await this.#statKey();
      if (key !== this.#lastStat) {
        this.#lastStat = key;
        this.#schedule();
      }
    } catch {
      // The file may be in the middle of being replaced; the next poll sees it.
    }
  }

  #schedule(): void {
    if (this.#closed || this.#debounce !== null) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.reload();
    }, 100);
    this.#debounce.unref();
  }

  reload(): Promise<boolean> {
    // One load at a time; a reload requested during a load runs after it.
    const run = async (): Promise<boolean> => {
      if (this.#closed || this.#listener === null) return false;
      let r: FileLoad;
      try {
        r = await this.#loadComplete();
        if (r.file.bytesRead === 0)
          throw new MetadataParseError(this.#path, 'empty file (a writer that has not written yet?)');
      } catch (err) {
        this.counters.rejected++;
        const msg =
          err instanceof MetadataParseError
            ? 'invalid metadata file; keeping previous metadata'
            : 'cannot read metadata file; keeping previous metadata';
        this.#log.error({ err, path: this.#path }, msg);
        return false;
      }
      if (r.unchanged) {
        this.counters.unchanged++;
        return true;
      }
      this.#deliver(r.file.digest, r.metadata, r.warnings);
      return true;
    };
    const prev = this.#loading ?? Promise.resolve(true);
    const next = prev.then(run, run);
    this.#loading = next;
    return next;
  }

  /**
   * Loads the file once it is complete: renamed into place, or unchanged for settleMs;
   * and not changed while it was read (fstat before and after the read, against the
   * stat that let it be read). A parse that succeeds proves nothing: a prefix of a List
   * is a List.
   */
  async #loadComplete(): Promise<FileLoad> {
    const deadline = Date.now() + this.#maxSettleWaitMs;
    let waited = false;
    for (;;) {
      const st = await this.#stat(this.#path);
      const inPlace = this.#ino === null || st.ino === this.#ino;
      const age = Date.now() - st.mtimeMs;
      if (!inPlace || age >= this.#settleMs) {
        const r = await loadMetadataFile(this.#path, this.#lastDigest, this.#limits);
        const { before, after, bytesRead } = r.file;
        const same =
          before.ino === st.ino &&
          before.size === st.size &&
          before.mtimeMs === st.mtimeMs &&
          after.size === before.size &&
          after.mtimeMs === before.mtimeMs &&
          bytesRead === after.size;
        if (same) {
          this.#ino = st.ino;
          return r;
        }
        this.counters.changedWhileRead++;
      }
      if (Date.now() >= deadline) {
        throw new MetadataParseError(
          this.#path,
          `still changing after ${this.#maxSettleWaitMs} ms (write it elsewhere and rename it into place)`,
        );
      }
      if (this.counters.settleWaits++ === 0 || !waited)
        this.#log.info(
          { path: this.#path, settleMs: this.#settleMs },
          'metadata file is changing; waiting for it to settle',
        );
      waited = true;
      await new Promise((r) => setTimeout(r, Math.max(10, this.#settleMs - Math.max(0, age)) + 5));
      if (this.#closed) throw new MetadataParseError(this.#path, 'source closed while waiting');
    }
  }

  #deliver(digest: string, md: ClusterMetadata, warnings: readonly string[]): void {
    this.#lastDigest = digest;
    this.counters.loads++;
    // Say what changed, so that a shrinking inventory (a truncated file, a broken
    // exporter) is visible in the log and not only in records turning `net`.
    const keys = new Set<string>();
    for (const p of md.pods) keys.add(`${p.namespace}/${p.name}`);
    const added: string[] = [];
    const removed: string[] = [];
    for (const k of keys) if (!this.#podKeys.has(k)) added.push(k);
    for (const k of this.#podKeys) if (!keys.has(k)) removed.push(k);
    const before = this.#podKeys.size;
    this.#podKeys = keys;
    if (warnings.length > 0) {
      this.#log.warn(
        { path: this.#path, warnings: warnings.slice(0, 20), count: warnings.length },
        'metadata warnings',
      );
    }
    this.#log.info(
      {
        path: this.#path,
        pods: md.pods.length,
        services: md.services.length,
        nodes: md.nodes.length,
        networkSets: md.networkSets.length,
        podsAdded: added.length,
        podsRemoved: removed.length,
        added: added.slice(0, 20),
        removed: removed.slice(0, 20),
      },
      'metadata loaded',
    );
    if (removed.length * 2 > before) {
      this.#log.warn(
        { path: this.#path, podsBefore: before, pods: keys.size, removed: removed.slice(0, 20) },
        'metadata lost more than half of its pods',
      );
    }
    this.#listener?.(md);
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#timer !== null) clearInterval(this.#timer);
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#timer = null;
    this.#debounce = null;
  }
}
