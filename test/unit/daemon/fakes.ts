// An in-memory datapath and sink, so the daemon runs without root or a kernel: the test
// says which updates the "kernel" counted, and reads back the lines the daemon wrote.
import { EventEmitter } from 'node:events';
import type { DaemonDatapath, DatapathFactory } from '../../../src/daemon/datapath.ts';
import type { DatapathOptions } from '../../../src/datapath/datapath.ts';
import type { ConnectionUpdate, ConntrackEvent } from '../../../src/datapath/types.ts';
import type { LineBatch } from '../../../src/export/batch.ts';
import { newSinkStats, type Sink, type SinkStats } from '../../../src/export/sink.ts';

/** Updates the test "counts" wait here until the daemon drains (sync/stop), as in the kernel map. */
export class MemoryDatapath extends EventEmitter implements DaemonDatapath {
  readonly attachMode = 'tcx' as const;
  readonly options: DatapathOptions;
  #pending: ConnectionUpdate[] = [];
  #pendingCt: ConntrackEvent[] = [];
  readonly #onUpdate: (u: ConnectionUpdate) => void;
  readonly #onConntrack: (e: ConntrackEvent) => void;
  syncs = 0;
  stopped = false;
  closed = false;

  constructor(
    options: DatapathOptions,
    onUpdate: (u: ConnectionUpdate) => void,
    onConntrack: (e: ConntrackEvent) => void,
  ) {
    super();
    this.options = options;
    this.#onUpdate = onUpdate;
    this.#onConntrack = onConntrack;
  }

  /** Packets counted (not yet drained); ignored once stopped, as a detached program counts nothing. */
  count(...updates: ConnectionUpdate[]): void {
    if (!this.stopped) this.#pending.push(...updates);
  }

  conntrack(...events: ConntrackEvent[]): void {
    if (!this.stopped) this.#pendingCt.push(...events);
  }

  interfaces() {
    return this.options.interfaces.map((name) => ({ name }));
  }

  stats() {
    return { kernel: {}, dropReasons: {} };
  }

  #drain(): void {
    for (const e of this.#pendingCt.splice(0)) this.#onConntrack(e);
    for (const u of this.#pending.splice(0)) this.#onUpdate(u);
  }

  async sync(): Promise<undefined> {
    if (this.closed) throw new Error('datapath is closed');
    this.syncs++;
    this.#drain();
    return undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.#drain();
  }

  close(): void {
    this.closed = true;
  }
}

/** A factory that remembers the datapath it made; `fail` makes open() throw these codes first. */
export function memoryDatapath(fail: string[] = []): DatapathFactory & {
  made: MemoryDatapath[];
  opened: DatapathOptions[];
  releases: number;
} {
  const f = {
    made: [] as MemoryDatapath[],
    opened: [] as DatapathOptions[],
    releases: 0,
    open(o: DatapathOptions, onUpdate: (u: ConnectionUpdate) => void, onCt: (e: ConntrackEvent) => void) {
      f.opened.push(o);
      const code = fail.shift();
      if (code !== undefined) throw Object.assign(new Error(`no ${code}`), { code, errno: 95 });
      const dp = new MemoryDatapath(o, onUpdate, onCt);
      f.made.push(dp);
      return dp;
    },
    releaseFreeMemory() {
      f.releases++;
    },
  };
  return f;
}

/** Keeps every line written; while `stalled`, flush() and close() wait for release(). */
export class MemorySink implements Sink {
  readonly name: string;
  readonly lines: string[] = [];
  stalled = false;
  closed = false;
  #waiters: (() => void)[] = [];
  readonly #stats: SinkStats = newSinkStats();

  constructor(name = 'memory') {
    this.name = name;
  }

  /** The records written, parsed. */
  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  write(batch: LineBatch): void {
    this.lines.push(...batch.lines());
    this.#stats.acceptedLines += batch.count;
    this.#stats.writtenLines += batch.count;
    this.#stats.writtenBytes += batch.bytes;
  }

  flush(): Promise<void> {
    if (!this.stalled) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  release(): void {
    this.stalled = false;
    for (const w of this.#waiters.splice(0)) w();
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  idle(): boolean {
    return !this.stalled;
  }

  stats(): SinkStats {
    return { ...this.#stats, errors: { ...this.#stats.errors } };
  }
}
