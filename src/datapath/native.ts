// Loads the addon and types exactly what it exports (addon/src/binding.cc).
import { createRequire } from 'node:module';
import { projectPath } from '../common/paths.ts';

export type NativeEventKind =
  | 'records'
  | 'cycle'
  | 'attached'
  | 'detached'
  | 'attach-failed'
  | 'error'
  | 'stopped'
  | 'conntrack-overrun'
  | 'leftover-unchecked'
  | 'journal-full';

export interface NativeEventInfo {
  cycle?: number;
  ifindex?: number;
  name?: string;
  mode?: 'tcx' | 'clsact';
  errno?: number;
  message?: string;
}

export interface NativeOptions {
  interfaces: string[];
  attachMode: 'auto' | 'tcx' | 'clsact';
  maxFlows: number;
  drainIntervalMs: number;
  ringRecords: number;
  useConntrack: boolean;
  conntrackEvents: boolean;
  conntrackNetns: string;
  conntrackRcvbufBytes: number;
  conntrackResyncMs: number;
  dropTracing: boolean;
  maxDropFlows: number;
  pinDirectory: string;
  journalDirectory: string;
  journalLastGeneration: number;
  journalMaxBytes: number;
}

export interface NativeConntrackStats {
  eventsNew: number;
  eventsDestroy: number;
  dumped: number;
  overruns: number;
  resyncs: number;
  syntheticDestroys: number;
  parseErrors: number;
  known: number;
  rcvbufBytes: number;
  busyNs: number;
  /** Wake-ups that pushed records (events, or a resync's dump): the listener waits 5 ms after each. */
  reads: number;
}

export interface NativeStats {
  kernel: Record<string, number>;
  drainCycles: number;
  /** Times the drain thread went to sleep: a drain found nothing and the generation was empty. */
  drainSleeps: number;
  /** The drain thread sleeps, with no timer, until the programs insert an entry. */
  drainAsleep: boolean;
  recordsDrained: number;
  drainNs: number;
  ringFullWaits: number;
  /** Per-CPU cache slots added to their map entries before drains, and packets of slots whose entry was gone. */
  cacheMerged: number;
  cacheMergeLost: number;
  /** Bytes written to the drain journal, cycles it could not hold, and adopted entries a journal cycle held already. */
  journalBytes: number;
  journalErrors: number;
  /** Drain cycles not journaled (and their records): the journal held StateDirectoryMaxSizeMB. */
  journalSkippedCycles: number;
  journalSkippedRecords: number;
  /** The journal's segments on disk at the last cycle's start (0 without a bound). */
  journalDiskBytes: number;
  restartDiscarded: number;
  attachFailures: number;
  conntrack?: NativeConntrackStats;
  /** Every kernel drop since load, by skb_drop_reason value (as a string). */
  dropReasons: Record<string, number>;
}

export interface NativeInterface {
  ifindex: number;
  name: string;
  mode: 'tcx' | 'clsact';
}

export interface NativeDatapath {
  requestDrain(rotate?: boolean): number;
  /** What pinning did at load: adopted, or made anew and why (naming the path). */
  pinNotes(): string[];
  read(into: Uint8Array): number;
  stop(): void;
  close(): void;
  stats(): NativeStats;
  interfaces(): NativeInterface[];
  progIds(): number[];
  testRun(packet: Uint8Array, egress: boolean): number;
  /** Keep the event loop alive for the worker's events (while a drain is awaited). */
  setRef(ref: boolean): void;
  readonly attachMode: 'tcx' | 'clsact';
}

export interface NativeModule {
  Datapath: new (
    options: NativeOptions,
    onEvent: (kind: NativeEventKind, info: NativeEventInfo) => void,
  ) => NativeDatapath;
  layout: Record<string, number>;
  statNames: string[];
  /** enum skb_drop_reason of the running kernel: value -> name without SKB_DROP_REASON_. */
  dropReasonNames: Record<string, string>;
  /** glibc malloc_trim(0): gives the malloc heaps' free pages back; true if it released any. */
  releaseFreeMemory(): boolean;
  /**
   * Fluent Forward entries of data's JSON lines from `from`, into out from `o`
   * (addon/src/json_msgpack.h): 0 done, 1 a line declined (state[0]..state[3]), 2 out is
   * full; state = [next, out's length, entries written, declined line's end].
   */
  forwardEntries(
    data: Buffer,
    from: number,
    out: Buffer,
    o: number,
    nowSec: number,
    state: Float64Array,
  ): 0 | 1 | 2;
  /** CRC-32C (Castagnoli) of data continued from crc (0 to start): the spool's frame check. */
  crc32c(data: Uint8Array, crc?: number): number;
  /** The same by the portable byte table (what runs without SSE 4.2), for the tests. */
  crc32cTable(data: Uint8Array, crc?: number): number;
  /** Whether `name` matches one of `globs`, by the fnmatch(3) the addon attaches with. */
  matchInterface(globs: readonly string[], name: string): boolean;
}

const candidates = [
  projectPath('build', 'Release', 'flowlogd.node'),
  projectPath('build', 'Debug', 'flowlogd.node'),
];

let cached: NativeModule | undefined;

/** The addon, from build/Release then build/Debug; the error lists every path tried. */
export function loadNative(): NativeModule {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates) {
    try {
      cached = require(path) as NativeModule;
      return cached;
    } catch (err) {
      tried.push(`${path}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const err = new Error(
    `flowlogd's native addon is not built (run scripts/setup.sh). Tried:\n  ${tried.join('\n  ')}`,
  ) as Error & { code: string };
  err.code = 'ERR_ADDON_MISSING';
  throw err;
}
