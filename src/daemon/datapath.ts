// Where the daemon gets its datapath: a factory it is given. The real one loads the eBPF
// programs through the addon (root, a kernel with BTF); tests give an in-memory one, so
// the daemon's flush, reload and stop run anywhere.
import type { Logger } from 'pino';
import {
  type DatapathOptions,
  FlowDatapath,
  type InterfaceEvent,
  releaseNativeFreeMemory,
} from '../datapath/datapath.ts';
import type { ConnectionUpdate, ConntrackEvent } from '../datapath/types.ts';

/** What the daemon uses of a datapath (FlowDatapath is one). */
export interface DaemonDatapath {
  readonly attachMode: 'tcx' | 'clsact';
  interfaces(): readonly { readonly name: string }[];
  stats(): {
    kernel: Record<string, number>;
    dropReasons?: Record<string, number>;
    /** The drain thread sleeps until traffic comes: no drain cycles meanwhile, by design. */
    drainAsleep?: boolean;
  };
  /**
   * Resolves once every packet counted before the call has reached `onUpdate`; with
   * `hold` (a drain journal), delivers nothing more until resume() and gives the number
   * past the journal segment it closed (FlowDatapath.sync).
   */
  sync(hold?: boolean): Promise<number | undefined>;
  resume?(): void;
  /** A previous run's journal records, delivered as replayed updates (FlowDatapath.replay). */
  replay?(records: Uint8Array): number;
  pinNotes?(): string[];
  /** Detaches, then delivers everything still counted. */
  stop(): Promise<void>;
  close(): void;
  on(
    event: 'attached' | 'detached' | 'attach-failed' | 'leftover-unchecked',
    listener: (e: InterfaceEvent) => void,
  ): unknown;
  on(
    event: 'datapath-error' | 'conntrack-overrun' | 'journal-full',
    listener: (e: { errno?: number; message?: string }) => void,
  ): unknown;
  /** A drain cycle completed (the addon's drain thread is alive: /livez). */
  on(event: 'cycle', listener: (cycle: number) => void): unknown;
}

export interface DatapathFactory {
  /**
   * Attaches and starts counting; updates and conntrack events go to the callbacks. Throws
   * an error with code ERR_CONNTRACK or ERR_DROP_TRACE when the kernel lacks that feature.
   */
  open(
    options: DatapathOptions,
    onUpdate: (u: ConnectionUpdate) => void,
    onConntrack: (e: ConntrackEvent) => void,
  ): DaemonDatapath;
  /** Gives the native heaps' free pages back after a flush (src/common/memory.ts). */
  releaseFreeMemory(): unknown;
}

/** The eBPF datapath through the addon. */
export const kernelDatapath: DatapathFactory = {
  open: (options, onUpdate, onConntrack) => new FlowDatapath(options, onUpdate, onConntrack),
  releaseFreeMemory: releaseNativeFreeMemory,
};

/**
 * Opens the datapath with conntrack events and drop tracing when `options` asks for them;
 * if the kernel lacks either, says so and goes on without it (lifecycle then comes from
 * TCP flags and idle timeouts, and every flow is `allow`).
 */
export function openDatapath(
  factory: DatapathFactory,
  options: DatapathOptions,
  onUpdate: (u: ConnectionUpdate) => void,
  onConntrack: (e: ConntrackEvent) => void,
  log: Logger,
): DaemonDatapath {
  let conntrackEvents = options.conntrackEvents;
  let dropTracing = options.dropTracing;
  for (;;) {
    try {
      return factory.open({ ...options, conntrackEvents, dropTracing }, onUpdate, onConntrack);
    } catch (err) {
      const e = err as Error & { code?: string; errno?: number };
      if (e.code === 'ERR_CONNTRACK' && conntrackEvents) {
        log.warn(
          { code: e.code, errno: e.errno },
          `${e.message}: going on without conntrack events (lifecycle from TCP flags and idle timeouts, no Service joins)`,
        );
        conntrackEvents = false;
      } else if (e.code === 'ERR_DROP_TRACE' && dropTracing) {
        log.warn(
          { code: e.code, errno: e.errno },
          `${e.message}: going on without drop tracing (no deny records)`,
        );
        dropTracing = false;
      } else {
        throw err;
      }
    }
  }
}
