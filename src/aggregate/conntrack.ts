// The conntrack join: conntrack entries joined to the aggregator's per-interface
// connections, which they orient (conntrack knows the initiator), rename (DNAT: the
// backend, and the Service of both sides) and end (DESTROY).
//
// A conntrack entry has two tuples: the original (as the client sent it: a Service's
// cluster IP before DNAT) and the reply (as the backend answers). TC on the client's veth
// sees the pre-DNAT tuple, TC on the backend's veth the post-DNAT one; both are the same
// connection. Connections are matched by a direction-free tuple key without interface.

import { flat } from '../common/flat.ts';
import {
  type ConnectionUpdate,
  type ConntrackEvent,
  ConntrackEventType,
  InitiatorHow,
} from '../datapath/types.ts';
import { type Conn, isIcmp } from './connections.ts';
import type { AggregatorStats, ResolverLike } from './options.ts';

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
  /** In the dump made at start: the connection began before flowlogd (re)started. */
  readonly preExisting: boolean;
  /** Per-interface connections joined to this entry: usually one or two, so no array for the first. */
  #conns: C | C[] | null = null;

  constructor(e: ConntrackEvent, preExisting = false) {
    this.id = e.id | 0;
    this.preExisting = preExisting;
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

  /** Takes a connection off the entry (it is another connection's now). */
  remove(c: C): void {
    const cs = this.#conns;
    if (cs === c) this.#conns = null;
    else if (Array.isArray(cs)) {
      const i = cs.indexOf(c);
      if (i >= 0) cs.splice(i, 1);
    }
  }

  /** Calls `f` for each connection joined to the entry. */
  forEach(f: (c: C) => void): void {
    const cs = this.#conns;
    if (cs === null) return;
    if (Array.isArray(cs)) for (const c of cs) f(c);
    else f(cs);
  }
}

function isStart(e: ConntrackEvent): boolean {
  return e.type === ConntrackEventType.new || e.type === ConntrackEventType.dump;
}

/** Live conntrack entries, and the connections joined to them or waiting for theirs. */
export class ConntrackJoin {
  readonly #stats: AggregatorStats;
  readonly #resolver: ResolverLike;
  // Live entries by tuple key (original and reply; no map by id: conntrack keeps tuples
  // unique among live entries, and 100k ids as keys cost ~5 MB); connections waiting for
  // theirs.
  readonly #ct = new Map<string, CtEntry<Conn>>();
  readonly #pending = new Map<string, Conn[]>();
  /** Connections seen while conntrack events flow whose entry has not been found yet, and their tuple keys. */
  readonly #unjoined = new Map<Conn, string>();
  /** The dump made at start is complete (its entries existed before this run). */
  #startDumpDone = false;

  /** Counts into `stats` (conntrackEntries, conntrackJoined, conntrackCompleted, reoriented). */
  constructor(stats: AggregatorStats, resolver: ResolverLike) {
    this.#stats = stats;
    this.#resolver = resolver;
  }

  /**
   * One conntrack event or dumped entry. NEW/DUMP joins the entry to the connections of
   * its tuples (and NAT: the client's side shows the backend, both sides the Service);
   * DESTROY completes them. Idempotent: a repeated DESTROY changes nothing.
   */
  observe(e: ConntrackEvent): void {
    if (e.type === ConntrackEventType.dumpDone) {
      this.#startDumpDone = true;
      this.#afterDump(e);
      return;
    }
    if (isStart(e)) {
      const entry = new CtEntry<Conn>(e, e.type === ConntrackEventType.dump && !this.#startDumpDone);
      const known = this.#ct.get(entry.origKey);
      if (known?.id === entry.id) return; // a dump repeating what the events said
      // Conntrack's live entries never share a tuple: one we hold with either of these
      // tuples ended unheard (its DESTROY went with an overrun).
      if (known !== undefined) this.#forget(known);
      const knownReply = this.#ct.get(entry.replyKey);
      if (knownReply !== undefined) this.#forget(knownReply);
      this.#stats.conntrackEntries++;
      this.#ct.set(entry.origKey, entry);
      if (entry.replyKey !== entry.origKey) this.#ct.set(entry.replyKey, entry);
      for (const k of entry.replyKey === entry.origKey ? [entry.origKey] : [entry.origKey, entry.replyKey]) {
        const waiting = this.#pending.get(k);
        if (waiting === undefined) continue;
        this.#pending.delete(k);
        for (const c of waiting) this.#join(c, entry, k);
      }
      return;
    }
    // DESTROY: by its original tuple (the listener may have missed the NEW). An entry held
    // under that tuple with another id is a newer connection that reused it (a resync's
    // dump can bring it before the older one's queued DESTROY): not this one's to end.
    const origKey = tupleKey(e.proto, e.origSrc, e.origSport, e.origDst, e.origDport);
    const entry = this.#ct.get(origKey);
    if (entry === undefined || entry.id !== (e.id | 0)) {
      const replyKey = tupleKey(e.proto, e.replyDst, e.replyDport, e.replySrc, e.replySport);
      for (const key of [origKey, replyKey]) {
        for (const c of this.#pending.get(key) ?? []) this.#complete(c);
        this.#pending.delete(key);
      }
      return;
    }
    this.#forget(entry);
  }

  /**
   * Joins a new connection to its conntrack entry, or waits for one until the next flush.
   * `notEntry`: an entry it must not join (the ended connection's, still held: rejoin).
   */
  joinNew(c: Conn, u: ConnectionUpdate, notEntry: CtEntry<Conn> | null = null): void {
    if (this.#stats.lifecycleSource !== 'conntrack') return; // no conntrack events at all
    const icmp = isIcmp(c.proto);
    const id = icmp ? (u.icmpId ?? 0) : 0;
    const tk = tupleKey(c.proto, c.cIp, icmp ? id : c.cPort, c.sIp, icmp ? id : c.sPort);
    const entry = this.#ct.get(tk);
    if (entry !== undefined && entry !== notEntry) {
      this.#join(c, entry, tk);
      return;
    }
    this.#unjoined.set(c, tk);
    let list = this.#pending.get(tk);
    if (list === undefined) {
      list = [];
      this.#pending.set(tk, list);
    }
    list.push(c);
  }

  /**
   * A closed connection's 4-tuple opened again (Conn.restart: a client's tcp_tw_reuse, a
   * port reused after RST). Conntrack ended the old entry and made a new one (DESTROY,
   * NEW), usually heard before the drain brings the SYN: the connection leaves the old
   * entry and joins the one of its tuple now, whose DESTROY ends it. Joined to the old one
   * it would be ended by nothing but its FINs or the TCP idle timeout.
   * - Its server side is set back to what this interface sees (the update's destination):
   *   a DNAT'd connection was renamed to the old entry's backend, and the reused tuple may
   *   be balanced to another one, which the new entry names.
   * - The old entry still held (the drain brought the SYN before conntrack's DESTROY and
   *   NEW were read) is not joined: its DESTROY would end the new connection. It waits for
   *   the NEW, which ends the old entry and joins it.
   */
  rejoin(c: Conn, u: ConnectionUpdate): void {
    const old = c.ct;
    if (old !== null) {
      old.remove(c);
      c.ct = null;
    }
    if (u.srcIp === c.cIp && u.srcPort === c.cPort) {
      c.sIp = u.dstIp;
      c.sPort = u.dstPort;
    }
    this.joinNew(c, u, old);
  }

  /** The connection ended or is forgotten: it waits for no entry any more. */
  stopWaiting(c: Conn): void {
    this.#unjoined.delete(c);
  }

  /** At each flush: connections not joined by now are not conntrack's (not tracked). */
  flushed(): void {
    this.#pending.clear();
  }

  /** The entry is gone: its connections are complete. */
  #forget(entry: CtEntry<Conn>): void {
    this.#stats.conntrackEntries--;
    if (this.#ct.get(entry.origKey) === entry) this.#ct.delete(entry.origKey);
    if (this.#ct.get(entry.replyKey) === entry) this.#ct.delete(entry.replyKey);
    entry.forEach((c) => {
      this.#complete(c);
    });
  }

  /**
   * A complete dump ended. Connections still waiting for their entry join it if the dump
   * had it; after lost events, those seen before the dump was requested and absent from
   * it have ended unheard (their NEW and DESTROY went with the overrun).
   */
  #afterDump(e: ConntrackEvent): void {
    for (const [c, tk] of this.#unjoined) {
      const entry = this.#ct.get(tk);
      if (entry !== undefined) {
        this.#join(c, entry, tk);
      } else if (e.afterOverrun && c.lastSeenMs < e.timeMs) {
        this.#unjoined.delete(c);
        this.#complete(c);
      }
    }
  }

  #complete(c: Conn): void {
    if (c.closed || c.ended) return;
    c.ended = true;
    this.#stats.conntrackCompleted++;
  }

  /** `tk`: the connection's tuple key, the entry's original or reply one. */
  #join(c: Conn, entry: CtEntry<Conn>, tk: string): void {
    this.#unjoined.delete(c);
    if (c.ct === entry) return;
    // On an uplink, a masqueraded pod connection looks like the host's own (the node's IP
    // after SNAT); conntrack's original tuple tells: it is the pod's, reported at its veth.
    if (c.hostSide && !this.#resolver.isNodeIp(entry.clientIp) && !this.#resolver.isNodeIp(entry.backendIp)) {
      c.forwarded = true;
    }
    c.ct = entry;
    entry.add(c);
    this.#stats.conntrackJoined++;
    // Conntrack knows the initiator for sure: orient the connection by it.
    const icmp = isIcmp(c.proto);
    const preNat = tk === entry.origKey;
    const serverIp = preNat ? entry.origDstIp : entry.backendIp;
    const serverPort = preNat ? entry.origDstPort : entry.backendPort;
    if (
      c.cIp === serverIp &&
      (icmp || c.cPort === serverPort) &&
      !(c.sIp === serverIp && c.sPort === serverPort)
    ) {
      c.swap();
      this.#stats.reoriented++;
    }
    if (c.how < InitiatorHow.conntrack) c.how = InitiatorHow.conntrack;
    // A UDP or ICMP flow has no opening to see: conntrack's start dump says it began
    // before this run (open across a restart, or before the first start). Carried in
    // (num_flows 1, not started), as a TCP connection first seen without its SYN is.
    // Not one a journal replay brought back: the crashed run saw it begin, and never flushed it.
    if (entry.preExisting && c.proto !== 6 && !c.reported && !c.replayed) c.reported = true;
    if (entry.dnat) {
      // Seen before DNAT (the client's veth): name the backend. Both sides: the Service.
      if (preNat) {
        c.sIp = entry.backendIp;
        c.sPort = icmp ? 0 : entry.backendPort;
      }
    }
    c.keyStamp = -1;
  }
}
