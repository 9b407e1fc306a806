// Joining conntrack entries to the aggregator's per-interface connections.
//
// A conntrack entry has two tuples: the original (as the client sent it: a Service's
// cluster IP before DNAT) and the reply (as the backend answers). TC on the client's veth
// sees the pre-DNAT tuple, TC on the backend's veth the post-DNAT one; both are the same
// connection. Connections are matched by a direction-free tuple key without interface.

import { flat } from '../common/flat.ts';
import { type ConntrackEvent, ConntrackEventType } from '../datapath/types.ts';

/** Direction-free key of a 5-tuple (ICMP: the echo identifier as both ports). */
export function tupleKey(proto: number, ipA: string, portA: number, ipB: string, portB: number): string {
  // Flat: kept as map keys, one or two per live entry.
  return flat(
    ipA < ipB || (ipA === ipB && portA <= portB)
      ? `${proto}|${ipA}|${portA}|${ipB}|${portB}`
      : `${proto}|${ipB}|${portB}|${ipA}|${portA}`,
  );
}

/**
 * What the aggregator keeps of one live conntrack entry (shared by its two tuple keys).
 * One per tracked connection, so kept small: DNAT derived, not stored.
 */
export class CtEntry<C extends object> {
  /** Conntrack's id, as an int32 (`id | 0`: the u32 as a double would be boxed). */
  readonly id: number;
  /** The initiator, as conntrack saw it. */
  readonly clientIp: string;
  /** The original destination (the Service's cluster IP and port when DNAT'd). */
  readonly origDstIp: string;
  /** Who really answers (the backend); equals the original destination without DNAT. */
  readonly backendIp: string;
  /** The pre-DNAT tuple key and the post-NAT one (the same string without NAT). */
  readonly origKey: string;
  readonly replyKey: string;
  readonly origDstPort: number;
  readonly backendPort: number;
  /** Per-interface connections joined to this entry: usually one or two, so no array for the first. */
  #conns: C | C[] | null = null;

  constructor(e: ConntrackEvent) {
    this.id = e.id | 0;
    this.clientIp = e.origSrc;
    this.origDstIp = e.origDst;
    this.backendIp = e.replySrc;
    this.origDstPort = e.origDport;
    this.backendPort = e.replySport;
    this.origKey = tupleKey(e.proto, e.origSrc, e.origSport, e.origDst, e.origDport);
    // The reply tuple seen from the client's side: replyDst:replyDport -> replySrc:replySport.
    const replyKey = tupleKey(e.proto, e.replyDst, e.replyDport, e.replySrc, e.replySport);
    this.replyKey = replyKey === this.origKey ? this.origKey : replyKey; // one string kept, not two equal ones
  }

  get dnat(): boolean {
    return this.backendIp !== this.origDstIp || this.backendPort !== this.origDstPort;
  }

  /** Adds a connection to those joined to the entry. */
  add(c: C): void {
    const cs = this.#conns;
    if (cs === null) this.#conns = c;
    else if (Array.isArray(cs)) cs.push(c);
    else this.#conns = [cs, c];
  }

  /** Calls `f` for each connection joined to the entry. */
  forEach(f: (c: C) => void): void {
    const cs = this.#conns;
    if (cs === null) return;
    if (Array.isArray(cs)) for (const c of cs) f(c);
    else f(cs);
  }
}

export function isStart(e: ConntrackEvent): boolean {
  return e.type === ConntrackEventType.new || e.type === ConntrackEventType.dump;
}
