// The typed surface over the addon: validates options, pumps ring records through one
// reusable view to the caller, and turns drain cycles into promises.
import { EventEmitter } from 'node:events';
import { ConntrackEventView, FlowRecordView } from './decode.ts';
import { INTERFACE_GLOB_RULE, isInterfaceGlob } from './globs.ts';
import {
  CycleRecord,
  RING_RECORD_CONNTRACK,
  RING_RECORD_CYCLE,
  RING_RECORD_FLOW,
  RING_RECORD_OVERFLOW,
  RING_RECORD_SIZE,
} from './layout.ts';
import {
  loadNative,
  type NativeDatapath,
  type NativeEventInfo,
  type NativeEventKind,
  type NativeOptions,
} from './native.ts';
import type { ConnectionUpdate, ConntrackEvent } from './types.ts';

export interface DatapathOptions {
  /** Interface name globs (fnmatch), e.g. ['cali*', 'eth0']. */
  interfaces: string[];
  /** 'auto' probes for tcx and falls back to clsact. */
  attachMode?: 'auto' | 'tcx' | 'clsact';
  /** Entries per kernel map generation; connections beyond it are counted as lost. */
  maxFlows?: number;
  /** How often the addon drains the kernel map on its own. */
  drainIntervalMs?: number;
  /** Capacity of the addon's record ring (records of 128 bytes). */
  ringRecords?: number;
  /** Ask the host's conntrack who opened a connection first seen mid-stream. */
  useConntrack?: boolean;
  /** Listen to conntrack NEW/DESTROY events (after a dump of what exists). */
  conntrackEvents?: boolean;
  /** Network namespace of that conntrack: a name in /run/netns or a path; '' = our own. */
  conntrackNetns?: string;
  /** Receive buffer of the event socket (SO_RCVBUFFORCE); an overrun triggers a resync. */
  conntrackRcvbufBytes?: number;
  /** Re-dump and reconcile every so often (0: only after an overrun). */
  conntrackResyncMs?: number;
  /** Trace policy drops (tp_btf/kfree_skb) into deny records. */
  dropTracing?: boolean;
  /** Entries per drop map generation. */
  maxDropFlows?: number;
  /** bpffs directory to adopt the maps from and pin them in (README, "Restarts"); '' = none. */
  pinDirectory?: string;
  /** Directory of the drain journal (addon/src/journal.h); '' = none. */
  journalDirectory?: string;
  /** Generation of the journal's last complete cycle (readJournal), or -1. */
  journalLastGeneration?: number;
  /** The journal's bound on disk (addon/src/journal.h); 0 = none. */
  journalMaxBytes?: number;
}

export interface InterfaceEvent {
  ifindex: number;
  name: string;
  mode: 'tcx' | 'clsact';
  errno?: number;
  message?: string;
}

export class DatapathOptionError extends Error {
  readonly code = 'ERR_DATAPATH_OPTION';
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, allowed: string) {
    super(`datapath option ${field}=${JSON.stringify(value)}: ${allowed}`);
    this.field = field;
    this.value = value;
  }
}

function intIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new DatapathOptionError(field, value, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * 2 MiB of records between the addon's threads and JavaScript. The producer waits when it
 * is full (nothing is dropped), and JavaScript takes 8192 records a read, so a bigger
 * ring only holds more resident memory: 65536 records (8 MiB) drained no faster.
 */
const DEFAULT_RING_RECORDS = 16384;

/**
 * Entries of each kernel flow map generation: it must hold every connection active
 * within one drain interval (README, "When the kernel map is full"); a bigger one costs
 * ~180 B of kernel memory an entry, four maps (two generations, IPv4 and IPv6).
 */
export const DEFAULT_FLOW_MAP_SIZE = 131072;
export const FLOW_MAP_SIZE_MIN = 1024;
export const FLOW_MAP_SIZE_MAX = 16 * 1024 * 1024;

/** How often the addon drains the kernel map on its own unless told otherwise. */
export const DEFAULT_DRAIN_INTERVAL_MS = 1000;

/**
 * Gives the free pages of the process's malloc heaps back to the kernel (glibc
 * malloc_trim), after a collection freed big native buffers. False without the addon.
 */
export function releaseNativeFreeMemory(): boolean {
  try {
    return loadNative().releaseFreeMemory();
  } catch {
    return false;
  }
}

/** Every native option, defaults filled in here (the addon has none of its own). */
export function validateDatapathOptions(o: DatapathOptions): NativeOptions {
  if (!Array.isArray(o.interfaces) || o.interfaces.length === 0) {
    throw new DatapathOptionError('interfaces', o.interfaces, 'must list at least one interface glob');
  }
  for (const g of o.interfaces) {
    if (!isInterfaceGlob(g))
      throw new DatapathOptionError('interfaces', g, `must list ${INTERFACE_GLOB_RULE}`);
  }
  const attachMode = o.attachMode ?? 'auto';
  if (!['auto', 'tcx', 'clsact'].includes(attachMode)) {
    throw new DatapathOptionError('attachMode', attachMode, "must be 'auto', 'tcx' or 'clsact'");
  }
  const netns = o.conntrackNetns ?? '';
  if (typeof netns !== 'string' || netns.length > 255 || (!netns.startsWith('/') && netns.includes('/'))) {
    throw new DatapathOptionError(
      'conntrackNetns',
      netns,
      "must be '' (our own), a name in /run/netns, or an absolute path such as /proc/PID/ns/net",
    );
  }
  const resync = o.conntrackResyncMs ?? 0;
  if (resync !== 0) intIn('conntrackResyncMs', resync, 1000, 3_600_000);
  for (const f of ['pinDirectory', 'journalDirectory'] as const) {
    const v = o[f] ?? '';
    if (typeof v !== 'string' || (v !== '' && !v.startsWith('/')))
      throw new DatapathOptionError(f, v, "must be '' (none) or an absolute path");
  }
  for (const f of ['useConntrack', 'conntrackEvents', 'dropTracing'] as const) {
    if (o[f] !== undefined && typeof o[f] !== 'boolean')
      throw new DatapathOptionError(f, o[f], 'must be true or false');
  }
  return {
    interfaces: [...o.interfaces],
    attachMode,
    maxFlows: intIn('maxFlows', o.maxFlows ?? DEFAULT_FLOW_MAP_SIZE, FLOW_MAP_SIZE_MIN, FLOW_MAP_SIZE_MAX),
    drainIntervalMs: intIn('drainIntervalMs', o.drainIntervalMs ?? DEFAULT_DRAIN_INTERVAL_MS, 10, 60000),
    ringRecords: intIn('ringRecords', o.ringRecords ?? DEFAULT_RING_RECORDS, 1024, 16 * 1024 * 1024),
    useConntrack: o.useConntrack ?? true,
    conntrackEvents: o.conntrackEvents ?? false,
    conntrackNetns: netns,
    // 8 MiB lost events at 20k new connections/s on these machines; 64 MiB lost none.
    conntrackRcvbufBytes: intIn(
      'conntrackRcvbufBytes',
      o.conntrackRcvbufBytes ?? 64 * 1024 * 1024,
      1024,
      1 << 30,
    ),
    conntrackResyncMs: resync,
    dropTracing: o.dropTracing ?? false,
    maxDropFlows: intIn('maxDropFlows', o.maxDropFlows ?? 16384, 1024, 1024 * 1024),
    pinDirectory: o.pinDirectory ?? '',
    journalDirectory: o.journalDirectory ?? '',
    journalLastGeneration: intIn('journalLastGeneration', o.journalLastGeneration ?? -1, -1, 0xffffffff),
    journalMaxBytes: intIn('journalMaxBytes', o.journalMaxBytes ?? 0, 0, Number.MAX_SAFE_INTEGER),
  };
}

const READ_RECORDS = 8192;

export class FlowDatapath extends EventEmitter {
  readonly #native: NativeDatapath;
  readonly #onUpdate: (u: ConnectionUpdate) => void;
  readonly #onConntrack: ((e: ConntrackEvent) => void) | undefined;
  readonly #buf = new Uint8Array(READ_RECORDS * RING_RECORD_SIZE);
  readonly #view: FlowRecordView;
  readonly #ctView: ConntrackEventView;
  readonly #names = new Map<number, string>();
  #forgetAfterCycle: number[] = [];
  #completedCycle = 0;
  /** sync() calls waiting for a cycle; `hold`: stop delivering after its cycle record until resume(). */
  #waiters: { cycle: number; hold: boolean; resolve: (segmentClosed: number) => void }[] = [];
  /** Delivery stopped after a cycle record (sync(true)); records from #buf[#heldAt] wait. */
  #held = false;
  #heldAt = 0;
  #heldCount = 0;
  #stopped?: { promise: Promise<void>; resolve: () => void };
  #closed = false;

  /**
   * Loads and attaches the programs. `onUpdate` gets one reused view per record; copy
   * what you keep, the view changes on the next record. `onConntrack` gets conntrack
   * events (with `conntrackEvents`), in the order the listener produced them.
   */
  constructor(
    options: DatapathOptions,
    onUpdate: (u: ConnectionUpdate) => void,
    onConntrack?: (e: ConntrackEvent) => void,
  ) {
    super();
    const opts = validateDatapathOptions(options);
    this.#onUpdate = onUpdate;
    this.#onConntrack = onConntrack;
    const native = loadNative();
    const reasons = native.dropReasonNames;
    this.#view = new FlowRecordView(
      this.#buf,
      (i) => this.#names.get(i) ?? '',
      (r) => reasons[r] ?? String(r),
    );
    this.#ctView = new ConntrackEventView(this.#buf);
    const { Datapath } = native;
    this.#native = new Datapath(opts, (kind, info) => this.#onEvent(kind, info));
    for (const i of this.#native.interfaces()) this.#names.set(i.ifindex, i.name);
  }

  get attachMode(): 'tcx' | 'clsact' {
    return this.#native.attachMode;
  }

  interfaces() {
    return this.#native.interfaces();
  }

  /** The addon's counters; drop reasons by the kernel's name (NETFILTER_DROP), not number. */
  stats() {
    const s = this.#native.stats();
    const names = loadNative().dropReasonNames;
    const byName: Record<string, number> = {};
    for (const [reason, n] of Object.entries(s.dropReasons)) byName[names[reason] ?? reason] = n;
    return { ...s, dropReasons: byName };
  }

  progIds(): number[] {
    return this.#native.progIds();
  }

  /** Runs the ingress (or egress) program once over a hand-built packet. */
  testRun(packet: Uint8Array, egress = false): number {
    return this.#native.testRun(packet, egress);
  }

  /**
   * Resolves once every packet counted before the call has reached `onUpdate`. `hold`:
   * the addon closes its journal segment after that cycle, nothing after the cycle is
   * delivered until resume() (so a flush taken now holds exactly whole cycles), and the
   * promise gives the number past the closed segment (removeSegments()), 0 if none.
   */
  sync(hold = false): Promise<number> {
    if (this.#closed) return Promise.reject(new Error('datapath is closed'));
    const cycle = this.#native.requestDrain(hold);
    this.#native.setRef(true);
    return new Promise((resolve) => this.#waiters.push({ cycle, hold, resolve }));
  }

  /** Delivers what a sync(true) held back. */
  resume(): void {
    if (!this.#held) return;
    this.#held = false;
    if (!this.#closed) this.#pump();
  }

  /** What pinning did at load (adopted, or made anew and why), for the log. */
  pinNotes(): string[] {
    return this.#native.pinNotes();
  }

  /**
   * Delivers a previous run's journal records (readJournal) to `onUpdate` as replayed
   * updates, before anything this run drained: call it right after the constructor.
   */
  replay(records: Uint8Array): number {
    const view = new FlowRecordView(
      records,
      (i) => this.#names.get(i) ?? '',
      (r) => loadNative().dropReasonNames[r] ?? String(r),
    );
    view.replayed = true;
    const n = Math.floor(records.length / RING_RECORD_SIZE);
    for (let i = 0; i < n; i++) {
      const type = view.at(i);
      if (type === RING_RECORD_FLOW || type === RING_RECORD_OVERFLOW) this.#onUpdate(view);
    }
    return n;
  }

  /** Detaches from every interface, then delivers everything still counted. */
  stop(): Promise<void> {
    if (this.#stopped) return this.#stopped.promise;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.#stopped = { promise, resolve };
    this.#native.setRef(true);
    this.#native.stop();
    return promise;
  }

  /** Frees the programs and maps; detaches first if stop() was not awaited. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held = false;
    this.#pump();
    this.#native.close();
    for (const w of this.#waiters) w.resolve(0);
    this.#waiters = [];
    this.#stopped?.resolve();
  }

  #pump(): void {
    if (this.#held) return;
    for (;;) {
      let n = this.#heldCount;
      let i = this.#heldAt;
      this.#heldCount = 0;
      if (n === 0) {
        n = this.#native.read(this.#buf);
        i = 0;
      }
      for (; i < n; i++) {
        const type = this.#view.at(i);
        if (type === RING_RECORD_FLOW || type === RING_RECORD_OVERFLOW) this.#onUpdate(this.#view);
        else if (type === RING_RECORD_CONNTRACK && this.#onConntrack !== undefined) {
          this.#ctView.at(i);
          this.#onConntrack(this.#ctView);
        } else if (type === RING_RECORD_CYCLE && this.#cycleDone(i) && i + 1 < n) {
          // A sync(true) waits on this cycle: the rest of the buffer waits for resume().
          this.#heldAt = i + 1;
          this.#heldCount = n;
          return;
        }
        if (this.#held) return;
      }
      if (n < READ_RECORDS) return;
    }
  }

  /** A cycle record at #buf[i]: resolves the sync() calls it completes; true if one holds delivery. */
  #cycleDone(i: number): boolean {
    const dv = new DataView(this.#buf.buffer, this.#buf.byteOffset + i * RING_RECORD_SIZE, RING_RECORD_SIZE);
    const cycle = Number(dv.getBigUint64(CycleRecord.cycle, true));
    const segmentClosed = Number(dv.getBigUint64(CycleRecord.segment_closed, true));
    this.#completedCycle = Math.max(this.#completedCycle, cycle);
    let hold = false;
    const due = this.#waiters.filter((w) => w.cycle <= this.#completedCycle);
    if (due.length === 0) return false;
    this.#waiters = this.#waiters.filter((w) => w.cycle > this.#completedCycle);
    for (const w of due) {
      hold ||= w.hold;
      w.resolve(segmentClosed);
    }
    if (this.#waiters.length === 0 && !this.#stopped) this.#native.setRef(false);
    this.#held = hold;
    return hold;
  }

  #onEvent(kind: NativeEventKind, info: NativeEventInfo): void {
    if (this.#closed) return;
    switch (kind) {
      case 'records':
        this.#pump();
        return;
      case 'cycle': {
        // The cycle's record (in the ring, after its records) resolves the sync() calls.
        this.#pump();
        // Names of interfaces gone before this cycle are no longer in any record.
        if (!this.#held) {
          for (const i of this.#forgetAfterCycle) this.#names.delete(i);
          this.#forgetAfterCycle = [];
        }
        this.emit('cycle', info.cycle ?? 0);
        return;
      }
      case 'attached':
        this.#names.set(info.ifindex!, info.name!);
        this.emit('attached', info as InterfaceEvent);
        return;
      case 'detached':
        this.#forgetAfterCycle.push(info.ifindex!);
        this.emit('detached', info as InterfaceEvent);
        return;
      case 'attach-failed':
        this.emit('attach-failed', info as InterfaceEvent);
        return;
      case 'error':
        this.emit('datapath-error', info);
        return;
      case 'conntrack-overrun':
        this.emit('conntrack-overrun', info);
        return;
      case 'leftover-unchecked':
        // Filters at our handle that may be a crashed run's, left attached (see the message).
        this.emit('leftover-unchecked', info as InterfaceEvent);
        return;
      case 'journal-full':
        this.emit('journal-full', info);
        return;
      case 'stopped':
        this.#held = false;
        this.#pump();
        for (const w of this.#waiters) w.resolve(0);
        this.#waiters = [];
        this.#native.setRef(false);
        this.#stopped?.resolve();
        return;
    }
  }
}
