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

/** What the aggregator keeps of one live conntrack entry (shared by its two tuple keys). */
export interface CtEntry<C> {
  /** Conntrack's id, as an int32 (`id | 0`). */
  readonly id: number;
  /** The initiator, as conntrack saw it. */
  readonly clientIp: string;
  readonly clientPort: number;
  /** The original destination (the Service's cluster IP and port when DNAT'd). */
  readonly origDstIp: string;
  readonly origDstPort: number;
  /** Who really answers (the backend); equals the original destination without DNAT. */
  readonly backendIp: string;
  readonly backendPort: number;
  readonly dnat: boolean;
  /** The pre-DNAT tuple key and the post-NAT one (equal without NAT). */
  readonly origKey: string;
  readonly replyKey: string;
  /** Per-interface connections joined to this entry: usually one or two, so no array for the first. */
  conn: C | null;
  more: C[] | null;
}

export function entryOf<C>(e: ConntrackEvent): CtEntry<C> {
  const origKey = tupleKey(e.proto, e.origSrc, e.origSport, e.origDst, e.origDport);
  // The reply tuple seen from the client's side: replyDst:replyDport -> replySrc:replySport.
  let replyKey = tupleKey(e.proto, e.replyDst, e.replyDport, e.replySrc, e.replySport);
  if (replyKey === origKey) replyKey = origKey; // one string kept, not two equal ones
  return {
    id: e.id | 0, // an int32 (a small integer to V8): the u32 as a double would be boxed
    clientIp: e.origSrc,
    clientPort: e.origSport,
    origDstIp: e.origDst,
    origDstPort: e.origDport,
    backendIp: e.replySrc,
    backendPort: e.replySport,
    dnat: e.replySrc !== e.origDst || e.replySport !== e.origDport,
    origKey,
    replyKey,
    conn: null,
    more: null,
  };
}

/** Adds a connection to those joined to the entry. */
export function addConn<C>(entry: CtEntry<C>, c: C): void {
  if (entry.conn === null) entry.conn = c;
  else if (entry.more === null) entry.more = [c];
  else entry.more.push(c);
}

/** Calls `f` for each connection joined to the entry. */
export function forEachConn<C>(entry: CtEntry<C>, f: (c: C) => void): void {
  if (entry.conn !== null) f(entry.conn);
  if (entry.more !== null) for (const c of entry.more) f(c);
}

export function isStart(e: ConntrackEvent): boolean {
  return e.type === ConntrackEventType.new || e.type === ConntrackEventType.dump;
}
