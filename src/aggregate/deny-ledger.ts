// The deny ledger: packets the kernel dropped had been counted by TC on the allow side
// first (TC runs before the drop), so each drop the datapath reports is a debt of the
// allow connection of the same interface and tuple, paid from its counters before they
// are flushed. Its deny twin reports the packets; the allow side keeps only what passed.

import type { ConnectionUpdate } from '../datapath/types.ts';
import type { Conn } from './connections.ts';
import type { AggregatorStats } from './options.ts';

// Conn.debt (allow side, only once some of its packets were denied): denied packets and
// bytes not yet subtracted, per direction.
const DEBT_C2S_P = 0;
const DEBT_C2S_B = 1;
const DEBT_S2C_P = 2;
const DEBT_S2C_B = 3;

/** A drop drained before the allowed count of the same packets, oriented as its update. */
interface EarlyDeny {
  srcIp: string;
  srcPort: number;
  origP: number;
  origB: number;
  replyP: number;
  replyB: number;
  /** Flushes it has waited through. */
  flushes: number;
}

export class DenyLedger {
  readonly #stats: AggregatorStats;
  /** Denied packets drained before the allowed side's count (see moveDenied), by key. */
  readonly #early = new Map<string, EarlyDeny>();

  constructor(stats: AggregatorStats) {
    this.#stats = stats;
  }

  /** Takes packets the kernel dropped off the allow side of the same interface and tuple. */
  moveDenied(u: ConnectionUpdate, allow: Map<string, Conn>): void {
    const a = allow.get(u.key);
    if (a === undefined) {
      // The drop was drained before TC's count of the same packets (a packet TC counts
      // just after a generation flip can be dropped before the drop program flips): keep
      // the debt for the allowed side that comes with the next drain.
      const d = this.#early.get(u.key);
      if (d === undefined) {
        this.#early.set(u.key, {
          srcIp: u.srcIp,
          srcPort: u.srcPort,
          origP: u.origPackets,
          origB: u.origBytes,
          replyP: u.replyPackets,
          replyB: u.replyBytes,
          flushes: 0,
        });
      } else {
        const same = d.srcIp === u.srcIp && d.srcPort === u.srcPort;
        d.origP += same ? u.origPackets : u.replyPackets;
        d.origB += same ? u.origBytes : u.replyBytes;
        d.replyP += same ? u.replyPackets : u.origPackets;
        d.replyB += same ? u.replyBytes : u.origBytes;
      }
      return;
    }
    const fwd = u.srcPort === a.cPort && u.srcIp === a.cIp;
    this.#addDebt(a, fwd, u.origPackets, u.origBytes, u.replyPackets, u.replyBytes);
  }

  /** A new allow connection: the drops that came before its first count are its debt. */
  takeEarly(c: Conn, key: string): void {
    const early = this.#early.get(key);
    if (early === undefined) return;
    this.#early.delete(key);
    const fwd = early.srcPort === c.cPort && early.srcIp === c.cIp;
    this.#addDebt(c, fwd, early.origP, early.origB, early.replyP, early.replyB);
  }

  /** At each flush: an early deny whose allowed count has not come within a flush never will. */
  age(): void {
    for (const [k, d] of this.#early) if (++d.flushes > 1) this.#early.delete(k);
  }

  #addDebt(a: Conn, fwd: boolean, origP: number, origB: number, replyP: number, replyB: number): void {
    this.#stats.deniedMoved += origP + replyP;
    a.denied = true;
    a.netP -= origP + replyP;
    if (a.debt === null) a.debt = new Float64Array(4);
    const d = a.debt;
    d[DEBT_C2S_P]! += fwd ? origP : replyP;
    d[DEBT_C2S_B]! += fwd ? origB : replyB;
    d[DEBT_S2C_P]! += fwd ? replyP : origP;
    d[DEBT_S2C_B]! += fwd ? replyB : origB;
    payDebt(a);
  }
}

/**
 * Subtracts what was denied from the counters not yet flushed, never below zero. A plain
 * function (no ledger state): observe() calls it for each update of a denied allow side.
 */
export function payDebt(c: Conn): void {
  const d = c.debt;
  if (d === null) return;
  let x = Math.min(c.c2sP, d[DEBT_C2S_P]!);
  c.c2sP -= x;
  d[DEBT_C2S_P]! -= x;
  x = Math.min(c.c2sB, d[DEBT_C2S_B]!);
  c.c2sB -= x;
  d[DEBT_C2S_B]! -= x;
  x = Math.min(c.s2cP, d[DEBT_S2C_P]!);
  c.s2cP -= x;
  d[DEBT_S2C_P]! -= x;
  x = Math.min(c.s2cB, d[DEBT_S2C_B]!);
  c.s2cB -= x;
  d[DEBT_S2C_B]! -= x;
}
