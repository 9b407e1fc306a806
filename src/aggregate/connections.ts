// The connection store: one (interface, connection, action) per Conn, its numbers in a
// typed-array slab shared by all of an aggregator's connections.
//
// observe() reads and writes these fields for every update, so they are laid out for
// V8: flags, protocol and initiator decision in one small integer, ports in another,
// counters and times as doubles in a Float64Array instead of a boxed double per field.

import { type ConnectionUpdate, TcpFlag } from '../datapath/types.ts';
import type { Endpoint } from '../enrich/resolver.ts';
import type { Trace } from '../policy/trace.ts';
import type { CtEntry } from './conntrack.ts';
import type { Group } from './keys.ts';

// Connection state bits (Conn.fl): one small integer instead of a field per flag.
const FIN_C = 1 << 0;
const FIN_S = 1 << 1;
const ENDED = 1 << 2;
const CLOSED = 1 << 3; // completion reported; kept one interval for late packets (TCP only)
const ACTIVE = 1 << 4;
const REPORTED = 1 << 5;
const HOST_SIDE = 1 << 6;
const FORWARDED = 1 << 7;
const DENIED = 1 << 8;
const LOCAL_IS_CLIENT = 1 << 9;
const CLIENT_IS_A = 1 << 10;
const CLIENT_SIDE_KNOWN = 1 << 11;
const DENY_SIDE = 1 << 12; // in the deny table
const PROTO_SHIFT = 13; // bits 13-20: IANA protocol number
const HOW_SHIFT = 21; // bits 21-24: InitiatorHow
const VERDICT_CHECKED = 1 << 25; // its policy verdict was compared with the kernel's
const OVERFLOW = 1 << 26; // an interface's overflow counts (overflow.ts), not a connection
const REPLAYED = 1 << 27; // first seen in a previous run's drain journal

// A connection's numbers live in its aggregator's ConnNumbers slab (one for both tables),
// at Conn.o + one of these. As object fields they would be one boxed double each (byte
// counts and Unix ms times do not fit a small integer), 16 B apiece on top of the field.
const C2S_P = 0;
const C2S_B = 1;
const S2C_P = 2;
const S2C_B = 3;
const FIRST_SEEN = 4;
const LAST_SEEN = 5;
const NET_P = 6;
const STRIDE = 7;

/**
 * Numbers of all of one aggregator's connections, a slot of STRIDE doubles each, reused
 * through a free list. Slot 0 is scratch: a released connection points there, so a stale
 * reference can never write into a slot that was handed to another connection.
 */
export class ConnNumbers {
  f = new Float64Array(STRIDE * 1024);
  #free: number[] = [];
  #next = STRIDE;
  #live = 0;

  alloc(): number {
    this.#live++;
    let o = this.#free.pop();
    if (o === undefined) {
      if (this.#next + STRIDE > this.f.length) {
        // By half again, not double: at 100k connections a doubled slab would hold ~30k
        // empty slots (2.6 MB) for good.
        const bigger = new Float64Array(STRIDE * Math.ceil((this.f.length / STRIDE) * 1.5));
        bigger.set(this.f);
        this.f = bigger;
      }
      o = this.#next;
      this.#next += STRIDE;
    }
    this.f.fill(0, o, o + STRIDE);
    return o;
  }

  /** Capacity, slot 0 included. */
  get slots(): number {
    return this.f.length / STRIDE;
  }

  release(o: number): void {
    if (o === 0) return;
    this.#free.push(o);
    this.#live--;
  }

  /**
   * After a spike (a scan's 400k short connections) the slab would keep its largest size:
   * when under a quarter of it is live, the live slots move to a smaller one, in place of
   * what the per-connection objects' collection used to give back.
   */
  shrinkIfSparse(tables: readonly Map<string, Conn>[]): void {
    const slots = this.slots;
    if (slots <= 1024 || this.#live * 4 >= slots) return;
    let size = 1024;
    while (size < (this.#live + 1) * 2) size *= 2;
    const from = this.f;
    const to = new Float64Array(size * STRIDE);
    let next = STRIDE;
    for (const t of tables)
      for (const c of t.values()) {
        to.set(from.subarray(c.o, c.o + STRIDE), next);
        c.o = next;
        next += STRIDE;
      }
    this.f = to;
    this.#next = next;
    this.#free = [];
  }
}

/** One (interface, connection, action), oriented client (initiator) → server. */
export class Conn {
  cIp: string;
  sIp: string;
  /** Client port << 16 | server port, an int32 (a small integer to V8, not a field each). */
  #ports = 0;
  /** State bits (below 1 << PROTO_SHIFT), protocol and initiator decision: one small integer. */
  fl = ACTIVE;
  readonly #nums: ConnNumbers;
  /** Offset of this connection's slot in #nums.f (0 once released). */
  o: number;
  // Cached resolution and record key (valid while keyStamp is the flush's stamp).
  srcEp: Endpoint | null = null;
  dstEp: Endpoint | null = null;
  keyStamp = -1;
  /** The record this connection folds into (interned, shared with like connections). */
  group: Group | null = null;
  /** Its policy trace, evaluated once per connection (and again when policies or labels change). */
  trace: Trace | null = null;
  /** The conntrack entry (a DNAT'd one names the Service's address). */
  ct: CtEntry<Conn> | null = null;
  /** Deny side: the kernel's drop reason name. */
  dropReason = '';
  /** ICMP/ICMPv6: type << 8 | code of the first message (what ICMP policy rules test); -1 otherwise. */
  icmp: number;
  /** Allow side, once some of its packets were denied: what is still to subtract (DEBT_*). */
  debt: Float64Array | null = null;

  constructor(u: ConnectionUpdate, localIsInitiator: boolean, nums: ConnNumbers) {
    this.fl = ACTIVE | (u.proto << PROTO_SHIFT) | (u.initiatorHow << HOW_SHIFT);
    this.cIp = u.srcIp;
    this.sIp = u.dstIp;
    this.#ports = (u.srcPort << 16) | u.dstPort;
    this.icmp = isIcmp(u.proto) ? (u.icmpType << 8) | u.icmpCode : -1;
    this.#nums = nums;
    this.o = nums.alloc();
    this.localIsClient = localIsInitiator;
    this.clientIsA = u.initiatorIsSideA;
    this.firstSeenMs = u.firstSeenMs;
    this.lastSeenMs = u.lastSeenMs;
  }

  /** An interface's overflow counts for one protocol and direction (overflow.ts). */
  get overflow(): boolean {
    return this.#bit(OVERFLOW);
  }
  set overflow(v: boolean) {
    this.#set(OVERFLOW, v);
  }

  /** First seen in a previous run's drain journal: that run saw what it saw (its start included). */
  get replayed(): boolean {
    return this.#bit(REPLAYED);
  }
  set replayed(v: boolean) {
    this.#set(REPLAYED, v);
  }

  /** Gives the numbers' slot back; the connection is gone from its table. */
  release(): void {
    this.#nums.release(this.o);
    this.o = 0;
  }

  #bit(b: number): boolean {
    return (this.fl & b) !== 0;
  }
  #set(b: number, on: boolean): void {
    this.fl = on ? this.fl | b : this.fl & ~b;
  }
  #get(i: number): number {
    return this.#nums.f[this.o + i]!;
  }
  #put(i: number, v: number): void {
    this.#nums.f[this.o + i] = v;
  }

  get proto(): number {
    return (this.fl >>> PROTO_SHIFT) & 0xff;
  }
  /** The initiator decision's InitiatorHow. */
  get how(): number {
    return (this.fl >>> HOW_SHIFT) & 0xf;
  }
  set how(v: number) {
    this.fl = (this.fl & ~(0xf << HOW_SHIFT)) | (v << HOW_SHIFT);
  }
  get cPort(): number {
    return this.#ports >>> 16;
  }
  set cPort(v: number) {
    this.#ports = (v << 16) | (this.#ports & 0xffff);
  }
  get sPort(): number {
    return this.#ports & 0xffff;
  }
  set sPort(v: number) {
    this.#ports = (this.#ports & ~0xffff) | v;
  }

  get finC(): boolean {
    return this.#bit(FIN_C);
  }
  set finC(v: boolean) {
    this.#set(FIN_C, v);
  }
  get finS(): boolean {
    return this.#bit(FIN_S);
  }
  set finS(v: boolean) {
    this.#set(FIN_S, v);
  }
  get ended(): boolean {
    return this.#bit(ENDED);
  }
  set ended(v: boolean) {
    this.#set(ENDED, v);
  }
  /** Completion reported; kept one interval for late packets (TCP only). */
  get closed(): boolean {
    return this.#bit(CLOSED);
  }
  set closed(v: boolean) {
    this.#set(CLOSED, v);
  }
  /** Counted something since the last flush. */
  get active(): boolean {
    return this.#bit(ACTIVE);
  }
  set active(v: boolean) {
    this.#set(ACTIVE, v);
  }
  /** In a flush already (so no longer "started"). */
  get reported(): boolean {
    return this.#bit(REPORTED);
  }
  set reported(v: boolean) {
    this.#set(REPORTED, v);
  }
  /** Seen on a host interface (the host's own connection, unless conntrack says otherwise). */
  get hostSide(): boolean {
    return this.#bit(HOST_SIDE);
  }
  set hostSide(v: boolean) {
    this.#set(HOST_SIDE, v);
  }
  /** Conntrack says neither end is this host: forwarded (e.g. masqueraded pod) traffic. */
  get forwarded(): boolean {
    return this.#bit(FORWARDED);
  }
  set forwarded(v: boolean) {
    this.#set(FORWARDED, v);
  }
  /** Allow side: some of its packets were moved to deny. */
  get denied(): boolean {
    return this.#bit(DENIED);
  }
  set denied(v: boolean) {
    this.#set(DENIED, v);
  }
  /** In the deny table (its records are the action `deny`). */
  get denySide(): boolean {
    return this.#bit(DENY_SIDE);
  }
  set denySide(v: boolean) {
    this.#set(DENY_SIDE, v);
  }
  /** Its policy verdict was compared with what the kernel did (counted once). */
  get verdictChecked(): boolean {
    return this.#bit(VERDICT_CHECKED);
  }
  set verdictChecked(v: boolean) {
    this.#set(VERDICT_CHECKED, v);
  }
  get localIsClient(): boolean {
    return this.#bit(LOCAL_IS_CLIENT);
  }
  set localIsClient(v: boolean) {
    this.#set(LOCAL_IS_CLIENT, v);
  }
  /** The client is side a of the key (undefined for updates that do not say). */
  get clientIsA(): boolean | undefined {
    return this.#bit(CLIENT_SIDE_KNOWN) ? this.#bit(CLIENT_IS_A) : undefined;
  }
  set clientIsA(v: boolean | undefined) {
    this.#set(CLIENT_SIDE_KNOWN, v !== undefined);
    this.#set(CLIENT_IS_A, v === true);
  }

  get c2sP(): number {
    return this.#get(C2S_P);
  }
  set c2sP(v: number) {
    this.#put(C2S_P, v);
  }
  get c2sB(): number {
    return this.#get(C2S_B);
  }
  set c2sB(v: number) {
    this.#put(C2S_B, v);
  }
  get s2cP(): number {
    return this.#get(S2C_P);
  }
  set s2cP(v: number) {
    this.#put(S2C_P, v);
  }
  get s2cB(): number {
    return this.#get(S2C_B);
  }
  set s2cB(v: number) {
    this.#put(S2C_B, v);
  }
  get firstSeenMs(): number {
    return this.#get(FIRST_SEEN);
  }
  set firstSeenMs(v: number) {
    this.#put(FIRST_SEEN, v);
  }
  get lastSeenMs(): number {
    return this.#get(LAST_SEEN);
  }
  set lastSeenMs(v: number) {
    this.#put(LAST_SEEN, v);
  }
  /** Allow side: lifetime packets counted less those moved to deny. */
  get netP(): number {
    return this.#get(NET_P);
  }
  set netP(v: number) {
    this.#put(NET_P, v);
  }
  restart(u: ConnectionUpdate): void {
    this.icmp = isIcmp(u.proto) ? (u.icmpType << 8) | u.icmpCode : -1;
    this.finC = false;
    this.finS = false;
    this.ended = false;
    this.closed = false;
    this.reported = false;
    this.firstSeenMs = u.firstSeenMs;
    this.keyStamp = -1;
    this.verdictChecked = false;
  }

  /**
   * Adds one update's counts, `fwd` when its original direction is client → server, and
   * notes the end of a TCP connection (RST, or FIN both ways).
   */
  add(u: ConnectionUpdate, fwd: boolean): void {
    const f = this.#nums.f;
    const o = this.o;
    f[o + C2S_P]! += fwd ? u.origPackets : u.replyPackets;
    f[o + C2S_B]! += fwd ? u.origBytes : u.replyBytes;
    f[o + S2C_P]! += fwd ? u.replyPackets : u.origPackets;
    f[o + S2C_B]! += fwd ? u.replyBytes : u.origBytes;
    if (u.lastSeenMs > f[o + LAST_SEEN]!) f[o + LAST_SEEN] = u.lastSeenMs;
    this.active = true;
    if (this.proto !== 6 || this.ended) return;
    const cFlags = fwd ? u.origTcpFlags : u.replyTcpFlags;
    const sFlags = fwd ? u.replyTcpFlags : u.origTcpFlags;
    if (((cFlags | sFlags) & TcpFlag.RST) !== 0) this.ended = true;
    else {
      if ((cFlags & TcpFlag.FIN) !== 0) this.finC = true;
      if ((sFlags & TcpFlag.FIN) !== 0) this.finS = true;
      if (this.finC && this.finS) this.ended = true;
    }
  }

  /** Swap client and server (a surer initiator decision disagreed). */
  swap(): void {
    let t: string | number | boolean = this.cIp;
    this.cIp = this.sIp;
    this.sIp = t;
    t = this.cPort;
    this.cPort = this.sPort;
    this.sPort = t;
    t = this.c2sP;
    this.c2sP = this.s2cP;
    this.s2cP = t;
    t = this.c2sB;
    this.c2sB = this.s2cB;
    this.s2cB = t;
    t = this.finC;
    this.finC = this.finS;
    this.finS = t;
    this.localIsClient = !this.localIsClient;
    const a = this.clientIsA;
    if (a !== undefined) this.clientIsA = !a;
    this.keyStamp = -1;
  }
}

/** Removes a connection from its table for good (its numbers' slot is reused). */
export function forget(table: Map<string, Conn>, k: string, c: Conn): void {
  table.delete(k);
  c.release();
}

export function isIcmp(proto: number): boolean {
  return proto === 1 || proto === 58;
}
