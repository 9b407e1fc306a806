// Per-connection deltas from the datapath → Calico-format flow log records (SPEC §1–3).
//
// observe() is the hot path: one Map lookup and a few additions per update, no
// allocation for a known connection. Everything else (endpoint resolution, record keys,
// labels) happens at flush(), once per connection and cached across flushes.
//
// Records are derived from connections at every flush, so there is no per-record-key
// state to leak: a key exists in a flush exactly when some connection mapped to it was
// active in the interval (new, carried over while open, or completed in it).

import { flat } from '../common/flat.ts';
import {
  type ConnectionUpdate,
  type ConntrackEvent,
  ConntrackEventType,
  Hook,
  InitiatorHow,
  TcpFlag,
} from '../datapath/types.ts';
import type { Labels } from '../enrich/kube.ts';
import type { Endpoint, EndpointResolver, ServiceRef } from '../enrich/resolver.ts';
import { CtEntry, isStart, tupleKey } from './conntrack.ts';
import { DEFAULT_WORKLOAD_INTERFACES, InterfaceClassifier } from './interfaces.ts';
import {
  type Action,
  type AggregationKind,
  type FlowLogRecord,
  type LabelsField,
  NO_POLICY_HITS,
  protoName,
  type Reporter,
} from './record.ts';

export type ResolverLike = Pick<EndpointResolver, 'resolve' | 'service' | 'isNodeIp' | 'version'>;

export interface AggregatorOptions {
  readonly nodeName: string;
  readonly resolver: ResolverLike;
  /** Start of the first interval (Unix ms). */
  readonly startTimeMs: number;
  readonly kindForAllowed?: AggregationKind;
  readonly kindForDenied?: AggregationKind;
  readonly enabledForAllowed?: boolean;
  readonly enabledForDenied?: boolean;
  readonly includeLabels?: boolean;
  readonly includePolicies?: boolean;
  readonly includeService?: boolean;
  /** FlowLogsEnableHostEndpoint: report the host's own connections seen on host interfaces. */
  readonly hostEndpoints?: boolean;
  /** Non-TCP connections end after this long without packets (FlowLogsIdleTimeout). */
  readonly idleTimeoutMs?: number;
  /** TCP connections without FIN/RST end after this long without packets (FlowLogsTcpIdleTimeout). */
  readonly tcpIdleTimeoutMs?: number;
  /** Globs of workload (pod veth host-side) interface names. */
  readonly workloadInterfaces?: readonly string[];
  /** Connection table bound; updates of new connections beyond it are dropped and counted. */
  readonly maxConnections?: number;
  /**
   * Called when the lifecycle source is decided or changes: 'conntrack' once conntrack
   * events arrive (NEW/DESTROY start and end connections it tracks), 'tcp-flags+idle'
   * before (FIN/RST and idle timeouts only). For the daemon's log.
   */
  readonly onLifecycleSource?: (source: LifecycleSource) => void;
}

export type LifecycleSource = 'conntrack' | 'tcp-flags+idle';

export type ReconfigurableOptions = Pick<
  AggregatorOptions,
  | 'kindForAllowed'
  | 'kindForDenied'
  | 'enabledForAllowed'
  | 'enabledForDenied'
  | 'includeLabels'
  | 'includePolicies'
  | 'includeService'
  | 'idleTimeoutMs'
  | 'tcpIdleTimeoutMs'
>;

export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;
export const DEFAULT_MAX_CONNECTIONS = 1_000_000;

export interface AggregatorStats {
  /** Updates passed to observe(). */
  updates: number;
  /** Open connections and closed ones kept one interval to absorb late packets. */
  connections: number;
  /** Connection slots the numbers slab holds (live and free): its memory is 56 B a slot. */
  connectionSlots: number;
  /** Updates for a disabled action (FlowLogsFileEnabledFor… false). */
  ignoredDisabled: number;
  /** Updates on host interfaces while host endpoints are off. */
  ignoredHostInterface: number;
  /** Updates on host interfaces for traffic that is not the host's own (forwarded pod traffic). */
  forwarded: number;
  /** Updates of new connections dropped because the table was full, and what they carried. */
  droppedTableFull: number;
  droppedPackets: number;
  droppedBytes: number;
  /** Connections that changed orientation on a surer initiator decision. */
  reoriented: number;
  flushes: number;
  records: number;
  /** Conntrack events observed; live entries known; connections joined to an entry. */
  conntrackEvents: number;
  conntrackEntries: number;
  conntrackJoined: number;
  /** Connections completed by a conntrack DESTROY (rather than FIN/RST or idle timeout). */
  conntrackCompleted: number;
  /** Denied packets moved from an allow connection to its deny twin, and what could not be (no allow side). */
  deniedMoved: number;
  lifecycleSource: LifecycleSource;
}

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

// A connection's numbers live in its table's Float64Array, at Conn.o + one of these. As
// object fields they would be one boxed double each (byte counts and Unix ms times do
// not fit a small integer), 16 B apiece on top of the field.
const C2S_P = 0;
const C2S_B = 1;
const S2C_P = 2;
const S2C_B = 3;
const FIRST_SEEN = 4;
const LAST_SEEN = 5;
const NET_P = 6;
const STRIDE = 7;
// Conn.debt (allow side, only once some of its packets were denied): denied packets and
// bytes not yet subtracted, per direction.
const DEBT_C2S_P = 0;
const DEBT_C2S_B = 1;
const DEBT_S2C_P = 2;
const DEBT_S2C_B = 3;

/**
 * Numbers of all of one aggregator's connections, a slot of STRIDE doubles each, reused
 * through a free list. Slot 0 is scratch: a released connection points there, so a stale
 * reference can never write into a slot that was handed to another connection.
 */
class ConnNumbers {
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
class Conn {
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
  /** The conntrack entry (a DNAT'd one names the Service's address). */
  ct: CtEntry<Conn> | null = null;
  /** Deny side: the kernel's drop reason name. */
  dropReason = '';
  /** Allow side, once some of its packets were denied: what is still to subtract (DEBT_*). */
  debt: Float64Array | null = null;

  constructor(u: ConnectionUpdate, localIsInitiator: boolean, nums: ConnNumbers) {
    this.fl = ACTIVE | (u.proto << PROTO_SHIFT) | (u.initiatorHow << HOW_SHIFT);
    this.cIp = u.srcIp;
    this.sIp = u.dstIp;
    this.#ports = (u.srcPort << 16) | u.dstPort;
    this.#nums = nums;
    this.o = nums.alloc();
    this.localIsClient = localIsInitiator;
    this.clientIsA = u.initiatorIsSideA;
    this.firstSeenMs = u.firstSeenMs;
    this.lastSeenMs = u.lastSeenMs;
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
    this.finC = false;
    this.finS = false;
    this.ended = false;
    this.closed = false;
    this.reported = false;
    this.firstSeenMs = u.firstSeenMs;
    this.keyStamp = -1;
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

const q = JSON.stringify;

/**
 * What one endpoint says as a record's source or destination, besides its IP, and the
 * JSON around it; shared by every Side of that endpoint object, role and kind group (at
 * kind 0 there is a Side per peer address, and most peers are one 'pvt' or 'pub').
 */
class SideText {
  readonly name: string;
  readonly nameAggr: string;
  readonly namespace: string;
  readonly type: string;
  /** `"source_ip":`, then after the IP up to the port value, then from after it to the labels value. */
  readonly ipField: string;
  readonly rest: string;
  readonly post: string;
  constructor(dest: boolean, ep: Endpoint, aggregated: boolean) {
    this.name = aggregated ? '-' : ep.name;
    this.nameAggr = ep.nameAggr;
    this.namespace = ep.namespace;
    this.type = ep.type;
    const f = dest ? '"dest_' : '"source_';
    this.ipField = `${f}ip":`;
    this.rest = flat(
      `,${f}name":${q(this.name)},${f}name_aggr":${q(this.nameAggr)},${f}namespace":${q(this.namespace)},${f}port":`,
    );
    this.post = flat(`,${f}type":${q(this.type)},${f}labels":`);
  }
}
const sideTexts = new WeakMap<Endpoint, (SideText | undefined)[]>();
function sideText(dest: boolean, ep: Endpoint, aggregated: boolean): SideText {
  let all = sideTexts.get(ep);
  if (all === undefined) {
    all = [];
    sideTexts.set(ep, all);
  }
  const i = (dest ? 2 : 0) + (aggregated ? 1 : 0);
  let t = all[i];
  if (t === undefined) {
    t = new SideText(dest, ep, aggregated);
    all[i] = t;
  }
  return t;
}

/**
 * One side (source or destination) of a record key: type, namespace, aggregated name,
 * name and IP as the kind leaves them. Interned by value, so connections between the
 * same endpoints share one Side (endpoint pairs repeat a lot).
 */
class Side {
  readonly id: number;
  /** Text form; never needs JSON escaping (digits, dots, colons, hex). */
  readonly ip: string | null;
  readonly text: SideText;
  /** Flush in which a record last used it; unused Sides are dropped after each flush. */
  stamp = 0;
  constructor(id: number, dest: boolean, ip: string | null, ep: Endpoint, aggregated: boolean) {
    this.id = id;
    this.ip = ip;
    this.text = sideText(dest, ep, aggregated);
  }
  get name(): string {
    return this.text.name;
  }
  get nameAggr(): string {
    return this.text.nameAggr;
  }
  get namespace(): string {
    return this.text.namespace;
  }
  get type(): string {
    return this.text.type;
  }
}

/** A side's JSON up to its port value. */
function sideJson(x: Side): string {
  const t = x.text;
  return x.ip === null ? `${t.ipField}null${t.rest}` : `${t.ipField}"${x.ip}"${t.rest}`;
}

/** The destination Service part of a record key (interned by value). */
class SvcPart {
  readonly id: number;
  readonly namespace: string;
  readonly name: string;
  readonly portName: string;
  readonly port: number | null;
  stamp = 0;
  readonly json: string;
  constructor(id: number, namespace: string, name: string, portName: string, port: number | null) {
    this.id = id;
    this.namespace = namespace;
    this.name = name;
    this.portName = portName;
    this.port = port;
    this.json = flat(
      `"dest_service_namespace":${q(namespace)},"dest_service_name":${q(name)},` +
        `"dest_service_port":${q(portName)},"dest_service_port_num":${port}`,
    );
  }
}
const NO_SVC = new SvcPart(0, '-', '-', '-', null);

/**
 * What a record key says besides its endpoints: proto, action, reporter, drop reason, and
 * their JSON (`"proto":…,"action":…,"reporter":…` and `"drop_reason":…` for denies).
 * Interned: 256 protocols × 2 actions × 2 reporters, times the kernel's drop reasons.
 */
let nextParId = 1;
class Par {
  readonly id = nextParId++;
  readonly proto: string;
  readonly action: Action;
  readonly reporter: Reporter;
  readonly dropReason: string;
  readonly json: string;
  constructor(proto: string, action: Action, reporter: Reporter, dropReason: string) {
    this.proto = proto;
    this.action = action;
    this.reporter = reporter;
    this.dropReason = dropReason;
    const drop = dropReason === '' ? '' : `,"drop_reason":${q(dropReason)}`;
    this.json = flat(`"proto":${q(proto)},"action":${q(action)},"reporter":${q(reporter)}${drop}`);
  }
}
/** Without a drop reason, by (proto << 2 | deny << 1 | dst reporter); with one, by name too. */
const parsPlain: (Par | undefined)[] = [];
const parsDrop = new Map<string, Par>();
function parOf(proto: number, action: Action, reporter: Reporter, dropReason: string): Par {
  const i = (proto << 2) | (action === 'deny' ? 2 : 0) | (reporter === 'dst' ? 1 : 0);
  if (dropReason === '') {
    let p = parsPlain[i];
    if (p === undefined) {
      p = new Par(protoName(proto), action, reporter, '');
      parsPlain[i] = p;
    }
    return p;
  }
  const k = `${i}|${dropReason}`;
  let p = parsDrop.get(k);
  if (p === undefined) {
    p = new Par(protoName(proto), action, reporter, dropReason);
    parsDrop.set(k, p);
  }
  return p;
}

// A record's counters during a flush, in the aggregator's #sums at Group.at * SUMS + one
// of these (as Group fields they would be boxed doubles, allocated for every record key).
const BYTES_IN = 0;
const BYTES_OUT = 1;
const PACKETS_IN = 2;
const PACKETS_OUT = 3;
const NUM_FLOWS = 4;
const STARTED = 5;
const COMPLETED = 6;
const SUMS = 7;
const NO_SUMS = new Float64Array(0);

/**
 * One record key (everything but counters and labels), interned by value per action and
 * kept while connections map to it; its labels and place in #sums are the current flush's.
 */
class Group {
  readonly src: Side;
  readonly dst: Side;
  readonly srcPort: number | null;
  readonly dstPort: number | null;
  readonly svc: SvcPart;
  readonly par: Par;
  /** Flush whose record the labels and `at` below belong to. */
  stamp = 0;
  /** Index of this record in the flush (its counters are at #sums[at * SUMS]). */
  at = 0;
  srcLabels: Labels | null = null;
  dstLabels: Labels | null = null;
  constructor(src: Side, dst: Side, srcPort: number | null, dstPort: number | null, svc: SvcPart, par: Par) {
    this.src = src;
    this.dst = dst;
    this.srcPort = srcPort;
    this.dstPort = dstPort;
    this.svc = svc;
    this.par = par;
  }
}

/**
 * One action's record keys, found by their parts (interned objects and ports) through an
 * open-addressing table of indexes: no key string per record and no string hashing, and
 * at kind 0 there is a record key per connection. Rebuilt, compacted, after each sweep.
 */
class GroupIndex {
  #groups: Group[] = [];
  /** Index into #groups + 1, or 0 for an empty slot; capacity a power of two, at most half full. */
  #slots: Int32Array;

  /** `expected`: groups it will hold, so that filling it needs no rebuild. */
  constructor(expected = 0) {
    this.#slots = new Int32Array(slotsFor(expected * 2));
  }

  get size(): number {
    return this.#groups.length;
  }

  find(
    src: Side,
    srcPort: number | null,
    dst: Side,
    dstPort: number | null,
    svc: SvcPart,
    par: Par,
  ): Group | undefined {
    const mask = this.#slots.length - 1;
    for (let i = hashKey(src, srcPort, dst, dstPort, svc, par) & mask; ; i = (i + 1) & mask) {
      const at = this.#slots[i]!;
      if (at === 0) return undefined;
      const g = this.#groups[at - 1]!;
      if (
        g.src === src &&
        g.dst === dst &&
        g.srcPort === srcPort &&
        g.dstPort === dstPort &&
        g.svc === svc &&
        g.par === par
      )
        return g;
    }
  }

  /** Adds a group that find() did not find. */
  add(g: Group): void {
    this.#groups.push(g);
    if (this.#groups.length * 2 > this.#slots.length) this.#rebuild(this.#slots.length * 2);
    else this.#place(g, this.#groups.length);
  }

  /** Keeps the groups `keep` says yes to. */
  sweep(keep: (g: Group) => boolean): void {
    const kept = this.#groups.filter(keep);
    if (kept.length === this.#groups.length) return;
    this.#groups = kept;
    this.#rebuild(slotsFor(kept.length * 4)); // room to grow before the next rebuild
  }

  #rebuild(size: number): void {
    this.#slots = new Int32Array(size);
    for (let i = 0; i < this.#groups.length; i++) this.#place(this.#groups[i]!, i + 1);
  }

  #place(g: Group, at: number): void {
    const mask = this.#slots.length - 1;
    let i = hashKey(g.src, g.srcPort, g.dst, g.dstPort, g.svc, g.par) & mask;
    while (this.#slots[i] !== 0) i = (i + 1) & mask;
    this.#slots[i] = at;
  }
}

/** The smallest power of two from 1024 up that holds `n` slots. */
function slotsFor(n: number): number {
  let size = 1024;
  while (size < n) size *= 2;
  return size;
}

/** Mixes a record key's parts (ids are unique per live object; ports null as -1). */
function hashKey(
  src: Side,
  srcPort: number | null,
  dst: Side,
  dstPort: number | null,
  svc: SvcPart,
  par: Par,
): number {
  let h = Math.imul(src.id | 0, 0x9e3779b1);
  h = Math.imul(h ^ (dst.id | 0), 0x85ebca77) ^ ((srcPort ?? -1) << 7);
  h = Math.imul(h ^ (dstPort ?? -1), 0xc2b2ae3d) ^ (svc.id | 0);
  h = Math.imul(h ^ par.id, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

const EMPTY_LABELS: Labels = Object.freeze({});

function intersect(a: Labels | null, b: Labels | null): Labels {
  if (a === null || b === null) return EMPTY_LABELS;
  const out: Record<string, string> = {};
  for (const k in a) if (b[k] === a[k]) out[k] = a[k]!;
  return out;
}

const sortedLabelsCache = new WeakMap<Labels, LabelsField>();
function labelsField(l: Labels | null): LabelsField {
  const key = l ?? EMPTY_LABELS;
  let f = sortedLabelsCache.get(key);
  if (f === undefined) {
    const list = Object.keys(key)
      .sort()
      .map((k) => `${k}=${key[k]}`);
    f = Object.freeze({ labels: Object.freeze(list) });
    sortedLabelsCache.set(key, f);
  }
  return f;
}

const labelsJsonCache = new WeakMap<Labels, string>();
function labelsJson(l: Labels | null): string {
  const key = l ?? EMPTY_LABELS;
  let j = labelsJsonCache.get(key);
  if (j === undefined) {
    j = JSON.stringify(labelsField(key));
    labelsJsonCache.set(key, j);
  }
  return j;
}

/** Removes a connection from its table for good (its numbers' slot is reused). */
function forget(table: Map<string, Conn>, k: string, c: Conn): void {
  table.delete(k);
  c.release();
}

function isIcmp(proto: number): boolean {
  return proto === 1 || proto === 58;
}

export class FlowAggregator {
  readonly #nodeName: string;
  readonly #resolver: ResolverLike;
  readonly #ifaces: InterfaceClassifier;
  readonly #hostEndpoints: boolean;
  readonly #maxConnections: number;
  #kind: [AggregationKind, AggregationKind];
  #enabled: [boolean, boolean];
  #includeLabels: boolean;
  #includePolicies: boolean;
  #includeService: boolean;
  #idleMs: number;
  #tcpIdleMs: number;
  /** Bumped when options change so cached record keys are rebuilt. */
  #optsVersion = 0;
  readonly #nums = new ConnNumbers();
  readonly #allow = new Map<string, Conn>();
  readonly #deny = new Map<string, Conn>();
  // Conntrack join: live entries by tuple key (original and reply; no map by id: conntrack
  // keeps tuples unique among live entries, and 100k ids as keys cost ~5 MB); connections
  // waiting for theirs.
  readonly #ct = new Map<string, CtEntry<Conn>>();
  #ctEntries = 0;
  readonly #pending = new Map<string, Conn[]>();
  /** Connections seen while conntrack events flow whose entry has not been found yet, and their tuple keys. */
  readonly #unjoined = new Map<Conn, string>();
  /** Denied packets drained before the allowed side's count (see #moveDenied), by key. */
  readonly #earlyDenies = new Map<
    string,
    {
      srcIp: string;
      srcPort: number;
      origP: number;
      origB: number;
      replyP: number;
      replyB: number;
      flushes: number;
    }
  >();
  /** Connections created since the last flush, for prepareKeys() (from #unkeyedHead on). */
  #unkeyed: Conn[] = [];
  #unkeyedHead = 0;
  /** IPs seen behind this node's workload interfaces (pods here), with when last seen. */
  readonly #localPods = new Map<string, number>();
  readonly #onLifecycle: ((source: LifecycleSource) => void) | undefined;
  // Interned record keys and their parts, swept after every flush of what no connection uses.
  readonly #groups: [GroupIndex, GroupIndex] = [new GroupIndex(), new GroupIndex()];
  /**
   * Live Sides by value, for those the indexes below cannot tell apart: every Side without
   * an IP, and a Side with one when its address's index entry names another endpoint. A
   * Side with an IP is here or only in #sidesByIp, never both ways (one Side per value).
   */
  readonly #sides = new Map<string, Side>();
  /** [source, destination] Sides with an IP (kinds 0–1), by IP. */
  readonly #sidesByIp: [Map<string, Side>, Map<string, Side>] = [new Map(), new Map()];
  /** [source, destination] Sides without IP (kinds 2–3), by endpoint object. */
  readonly #sidesByEp: [Map<Endpoint, Side>, Map<Endpoint, Side>] = [new Map(), new Map()];
  readonly #svcs = new Map<string, SvcPart>();
  #nextId = 1;
  /** The record counters of the flush being collected (SUMS per record, at Group.at; zeroed). */
  #sums = NO_SUMS;
  /** Number of the flush in progress (stamps the groups it fills). */
  #flushNo = 0;
  #intervalStartMs: number;
  readonly #stats: AggregatorStats = {
    updates: 0,
    connections: 0,
    connectionSlots: 0,
    ignoredDisabled: 0,
    ignoredHostInterface: 0,
    forwarded: 0,
    droppedTableFull: 0,
    droppedPackets: 0,
    droppedBytes: 0,
    reoriented: 0,
    flushes: 0,
    records: 0,
    conntrackEvents: 0,
    conntrackEntries: 0,
    conntrackJoined: 0,
    conntrackCompleted: 0,
    deniedMoved: 0,
    lifecycleSource: 'tcp-flags+idle',
  };

  constructor(opts: AggregatorOptions) {
    this.#nodeName = opts.nodeName;
    this.#resolver = opts.resolver;
    this.#ifaces = new InterfaceClassifier(opts.workloadInterfaces ?? DEFAULT_WORKLOAD_INTERFACES);
    this.#hostEndpoints = opts.hostEndpoints ?? false;
    this.#maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#intervalStartMs = opts.startTimeMs;
    this.#kind = [opts.kindForAllowed ?? 2, opts.kindForDenied ?? 1];
    this.#enabled = [opts.enabledForAllowed ?? true, opts.enabledForDenied ?? true];
    this.#includeLabels = opts.includeLabels ?? true;
    this.#includePolicies = opts.includePolicies ?? true;
    this.#includeService = opts.includeService ?? true;
    this.#idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#tcpIdleMs = opts.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    this.#onLifecycle = opts.onLifecycleSource;
    this.#onLifecycle?.('tcp-flags+idle');
  }

  /** Applies new settings (SIGHUP) from the next flush on; counts are kept. */
  reconfigure(o: ReconfigurableOptions): void {
    this.#kind = [o.kindForAllowed ?? this.#kind[0], o.kindForDenied ?? this.#kind[1]];
    this.#enabled = [o.enabledForAllowed ?? this.#enabled[0], o.enabledForDenied ?? this.#enabled[1]];
    this.#includeLabels = o.includeLabels ?? this.#includeLabels;
    this.#includePolicies = o.includePolicies ?? this.#includePolicies;
    this.#includeService = o.includeService ?? this.#includeService;
    this.#idleMs = o.idleTimeoutMs ?? this.#idleMs;
    this.#tcpIdleMs = o.tcpIdleTimeoutMs ?? this.#tcpIdleMs;
    this.#optsVersion++;
  }

  /**
   * One datapath update. The action defaults from the update: packets the kernel dropped
   * by policy (`dropReason` set) are `deny` and are taken off the allow side, where TC
   * had counted them before the drop.
   */
  observe(u: ConnectionUpdate, action?: Action): void {
    this.#stats.updates++;
    const deny = (action ?? (u.dropReason ? 'deny' : 'allow')) === 'deny';
    if (deny && u.dropReason) this.#moveDenied(u);
    if (!this.#enabled[deny ? 1 : 0]) {
      this.#stats.ignoredDisabled++;
      return;
    }
    const table = deny ? this.#deny : this.#allow;
    let c = table.get(u.key);
    if (c === undefined) {
      const created = this.#create(u, table.size, deny);
      if (created === null) return;
      c = created;
      table.set(u.key, c);
      c.denySide = deny;
      this.#unkeyed.push(c);
      if (deny) {
        c.dropReason = u.dropReasonName ?? '';
        // Orient like the allowed side when there is one (drops know no initiator).
        const a = this.#allow.get(u.key);
        if (a !== undefined && a.cIp !== c.cIp) c.swap();
        if (a !== undefined) c.how = a.how;
      }
      if (!deny) {
        const early = this.#earlyDenies.get(u.key);
        if (early !== undefined) {
          this.#earlyDenies.delete(u.key);
          const fwd = early.srcPort === c.cPort && early.srcIp === c.cIp;
          this.#addDebt(c, fwd, early.origP, early.origB, early.replyP, early.replyB);
        }
      }
      this.#joinNew(c, u);
    } else if (c.closed && this.#isNewTcpOpen(u)) {
      c.restart(u); // the 5-tuple was reused for a new connection
    }

    // Same orientation as the connection? The key's side says so without formatting an
    // address; hand-built updates without it compare addresses.
    const sideA = u.initiatorIsSideA;
    let fwd =
      sideA !== undefined && c.clientIsA !== undefined
        ? sideA === c.clientIsA
        : u.srcPort === c.cPort && u.srcIp === c.cIp;
    if (u.initiatorHow > c.how) {
      if (!fwd) {
        c.swap();
        this.#stats.reoriented++;
        fwd = true;
      }
      c.how = u.initiatorHow;
    }
    let cFlags: number;
    let sFlags: number;
    if (fwd) {
      c.c2sP += u.origPackets;
      c.c2sB += u.origBytes;
      c.s2cP += u.replyPackets;
      c.s2cB += u.replyBytes;
      cFlags = u.origTcpFlags;
      sFlags = u.replyTcpFlags;
    } else {
      c.c2sP += u.replyPackets;
      c.c2sB += u.replyBytes;
      c.s2cP += u.origPackets;
      c.s2cB += u.origBytes;
      cFlags = u.replyTcpFlags;
      sFlags = u.origTcpFlags;
    }
    if (u.lastSeenMs > c.lastSeenMs) c.lastSeenMs = u.lastSeenMs;
    c.active = true;
    if (!deny) {
      c.netP += u.origPackets + u.replyPackets;
      if (c.denied) this.#payDebt(c);
    }
    if (c.proto === 6 && !c.ended) {
      if (((cFlags | sFlags) & TcpFlag.RST) !== 0) c.ended = true;
      else {
        if ((cFlags & TcpFlag.FIN) !== 0) c.finC = true;
        if ((sFlags & TcpFlag.FIN) !== 0) c.finS = true;
        if (c.finC && c.finS) c.ended = true;
      }
    }
  }

  #isNewTcpOpen(u: ConnectionUpdate): boolean {
    return (
      u.proto === 6 &&
      u.initiatorHow === InitiatorHow.syn &&
      (u.origTcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN
    );
  }

  #create(u: ConnectionUpdate, size: number, deny: boolean): Conn | null {
    const workload = this.#ifaces.role(u.interfaceName) === 'workload';
    // Workload (pod veth, host side): ingress = sent by the pod. Host interface: egress = sent by the host.
    const senderIsLocal = workload === (u.firstHook === Hook.ingress);
    const localIsInitiator = senderIsLocal === u.firstFromInitiator;
    const localIp = localIsInitiator ? u.srcIp : u.dstIp;
    if (workload) {
      this.#localPods.set(localIp, u.lastSeenMs);
    } else if (deny && this.#localPods.has(localIp)) {
      // Dropped on its way in from off the node (an ingress policy against a remote
      // client): the packet never reached the pod's veth, but the deny is the pod's.
    } else {
      if (!this.#hostEndpoints) {
        this.#stats.ignoredHostInterface++;
        return null;
      }
      if (!this.#resolver.isNodeIp(localIp)) {
        this.#stats.forwarded++;
        return null;
      }
    }
    const hostSide = !workload && !(deny && this.#localPods.has(localIp));
    if (size >= this.#maxConnections) {
      this.#stats.droppedTableFull++;
      this.#stats.droppedPackets += u.origPackets + u.replyPackets;
      this.#stats.droppedBytes += u.origBytes + u.replyBytes;
      return null;
    }
    const c = new Conn(u, localIsInitiator, this.#nums);
    c.hostSide = hostSide;
    return c;
  }

  /**
   * Closes the interval at `endTimeMs` and returns its records. Every connection active
   * in the interval is in exactly one record; counters restart at zero.
   */
  flush(endTimeMs: number): FlowLogRecord[] {
    const { groups, sums, startS, endS } = this.#close(endTimeMs);
    const out: FlowLogRecord[] = new Array(groups.length);
    const policies = this.#includePolicies ? NO_POLICY_HITS : null;
    const labels = this.#includeLabels;
    const host = this.#nodeName;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      const s = g.src;
      const d = g.dst;
      const v = g.svc;
      const p = g.par;
      const n = i * SUMS;
      out[i] = {
        start_time: startS,
        end_time: endS,
        source_ip: s.ip,
        source_name: s.name,
        source_name_aggr: s.nameAggr,
        source_namespace: s.namespace,
        source_port: g.srcPort,
        source_type: s.type,
        source_labels: labels ? labelsField(g.srcLabels) : null,
        dest_ip: d.ip,
        dest_name: d.name,
        dest_name_aggr: d.nameAggr,
        dest_namespace: d.namespace,
        dest_port: g.dstPort,
        dest_type: d.type,
        dest_labels: labels ? labelsField(g.dstLabels) : null,
        dest_service_namespace: v.namespace,
        dest_service_name: v.name,
        dest_service_port: v.portName,
        dest_service_port_num: v.port,
        proto: p.proto,
        action: p.action,
        reporter: p.reporter,
        ...(p.dropReason === '' ? {} : { drop_reason: p.dropReason }),
        policies,
        bytes_in: sums[n + BYTES_IN]!,
        bytes_out: sums[n + BYTES_OUT]!,
        packets_in: sums[n + PACKETS_IN]!,
        packets_out: sums[n + PACKETS_OUT]!,
        num_flows: sums[n + NUM_FLOWS]!,
        num_flows_started: sums[n + STARTED]!,
        num_flows_completed: sums[n + COMPLETED]!,
        http_requests_allowed_in: 0,
        http_requests_denied_in: 0,
        original_source_ips: null,
        num_original_source_ips: 0,
        host,
        '@timestamp': endS * 1000,
      };
    }
    return out;
  }

  /**
   * Like flush(), but returns the JSON lines directly: the same records, byte for byte
   * what JSON.stringify(flush()[i]) gives, each one template over JSON fragments cached
   * per interned endpoint side, Service and record key (no intermediate objects).
   */
  flushLines(endTimeMs: number): string[] {
    return Array.from(this.flushLineIterator(endTimeMs), flat);
  }

  /** flushLines() in arrays of at most `chunkLines` lines (see flushLineIterator). */
  flushLineChunks(endTimeMs: number, chunkLines = 8192): IterableIterator<string[]> {
    const size = Math.max(1, chunkLines);
    const lines = this.flushLineIterator(endTimeMs); // the interval closes now
    return (function* chunks() {
      let out: string[] = [];
      for (const line of lines) {
        out.push(flat(line));
        if (out.length >= size) {
          yield out;
          out = [];
        }
      }
      if (out.length > 0) yield out;
    })();
  }

  /**
   * flushLines() one line at a time, each built as it is taken, so a caller that encodes
   * each line and hands batches to a sink, waiting for them to drain, never holds one
   * flush's lines as strings (they die young). The interval closes now, when the
   * iterator is made; take every line before the next flush (which reuses the records'
   * labels: a line taken after it throws).
   */
  flushLineIterator(endTimeMs: number): IterableIterator<string> {
    const { groups, sums, startS, endS } = this.#close(endTimeMs);
    const no = this.#flushNo;
    const head = flat(`{"start_time":${startS},"end_time":${endS},`);
    const policies = flat(`,"policies":${this.#includePolicies ? q(NO_POLICY_HITS) : 'null'},"bytes_in":`);
    const tail = flat(
      ',"http_requests_allowed_in":0,"http_requests_denied_in":0,"original_source_ips":null,' +
        `"num_original_source_ips":0,"host":${q(this.#nodeName)},"@timestamp":${endS * 1000}}`,
    );
    const labels = this.#includeLabels;
    const self = this;
    return (function* lines() {
      for (let i = 0; i < groups.length; i++) {
        if (self.#flushNo !== no) throw new Error('flushLineIterator: lines taken after the next flush');
        const g = groups[i]!;
        const n = i * SUMS;
        yield `${head}${sideJson(g.src)}${g.srcPort}${g.src.text.post}${labels ? labelsJson(g.srcLabels) : 'null'},` +
          `${sideJson(g.dst)}${g.dstPort}${g.dst.text.post}${labels ? labelsJson(g.dstLabels) : 'null'},` +
          `${g.svc.json},${g.par.json}${policies}${sums[n + BYTES_IN]},"bytes_out":${sums[n + BYTES_OUT]},` +
          `"packets_in":${sums[n + PACKETS_IN]},"packets_out":${sums[n + PACKETS_OUT]},` +
          `"num_flows":${sums[n + NUM_FLOWS]},"num_flows_started":${sums[n + STARTED]},` +
          `"num_flows_completed":${sums[n + COMPLETED]}${tail}`;
      }
    })();
  }

  #close(endTimeMs: number): { groups: Group[]; sums: Float64Array; startS: number; endS: number } {
    // An early deny whose allowed count has not come within a flush never will.
    for (const [k, d] of this.#earlyDenies) if (++d.flushes > 1) this.#earlyDenies.delete(k);
    // Pods not seen for a TCP idle timeout may be gone (their IPs reused elsewhere).
    for (const [ip, seen] of this.#localPods)
      if (seen + this.#tcpIdleMs < endTimeMs) this.#localPods.delete(ip);
    const startS = Math.floor(this.#intervalStartMs / 1000);
    let endS = Math.floor(endTimeMs / 1000);
    if (endS <= startS) endS = startS + 1; // end_time is never equal to start_time
    const groups: Group[] = [];
    // At most a record per connection; the caller holds the counters only while it takes
    // the flush's records, so none of them are kept between flushes.
    // Fresh each flush and garbage after it (6 MB at kind 0 with 100k connections): kept
    // for reuse it was resident between flushes, and the post-flush GC and malloc trim
    // give it back (src/common/memory.ts).
    this.#sums = new Float64Array(SUMS * Math.max(16, this.#allow.size + this.#deny.size));
    const no = ++this.#flushNo;
    this.#collect(this.#allow, 0, endTimeMs, groups, no);
    this.#collect(this.#deny, 1, endTimeMs, groups, no);
    this.#sweep(no);
    this.#dropKindZeroKeys();
    this.#nums.shrinkIfSparse([this.#allow, this.#deny]);
    this.#pending.clear(); // not joined by now: conntrack does not track them
    this.#unkeyed = []; // the flush built every key
    this.#unkeyedHead = 0;
    this.#intervalStartMs = endTimeMs;
    this.#stats.flushes++;
    this.#stats.records += groups.length;
    const sums = this.#sums;
    this.#sums = NO_SUMS;
    return { groups, sums, startS, endS };
  }

  /** Forgets record keys, sides and Services that no connection used in flush `no`. */
  #sweep(no: number): void {
    for (const m of this.#groups) m.sweep((g) => g.stamp === no);
    for (const [k, x] of this.#sides) if (x.stamp !== no) this.#sides.delete(k);
    for (const m of this.#sidesByIp) for (const [k, x] of m) if (x.stamp !== no) m.delete(k);
    for (const m of this.#sidesByEp) for (const [k, x] of m) if (x.stamp !== no) m.delete(k);
    for (const [k, x] of this.#svcs) if (x.stamp !== no) this.#svcs.delete(k);
  }

  #collect(table: Map<string, Conn>, a: 0 | 1, endMs: number, groups: Group[], no: number): void {
    const kind = this.#kind[a];
    const action: Action = a === 0 ? 'allow' : 'deny';
    const resolver = this.#resolver;
    const version = resolver.version;
    // Cached keys are valid for one (metadata version, options version, kind).
    const stamp = version * 1e6 + this.#optsVersion * 4 + kind;
    for (const [k, c] of table) {
      if (c.forwarded) {
        forget(table, k, c);
        this.#unjoined.delete(c);
        this.#stats.forwarded++;
        continue;
      }
      let completes = false;
      if (c.closed) {
        // Late packets of a connection whose completion was already reported.
        if (!c.active) {
          forget(table, k, c);
          this.#unjoined.delete(c);
          continue;
        }
      } else {
        // A connection conntrack tracks ends with its DESTROY (the TCP idle timeout stays
        // as a safety net); others (no conntrack) by idle timeout, and denied ones by the
        // short one whatever their protocol: a blocked SYN never sees FIN, RST or conntrack.
        const idle = a === 0 && (c.proto === 6 || c.ct !== null) ? this.#tcpIdleMs : this.#idleMs;
        if (!c.ended && c.lastSeenMs + idle <= endMs) c.ended = true;
        completes = c.ended;
        if (completes) this.#unjoined.delete(c);
      }
      if (c.denied && c.netP <= 0 && a === 0) {
        // Every packet of it was denied: it exists only as a deny record.
        if (completes) forget(table, k, c);
        c.reported = true;
        c.keyStamp = -1; // its record key is not kept alive meanwhile: build it again if needed
        continue;
      }
      if (c.keyStamp !== stamp) this.#resolveAndKey(c, kind, action, stamp);
      else if (c.group === null) this.#resolveAndKey(c, kind, action, stamp, false); // kind 0: see #dropKindZeroKeys
      const g = c.group!;
      if (g.stamp !== no) {
        // First connection of this record in this flush.
        g.stamp = g.src.stamp = g.dst.stamp = g.svc.stamp = no;
        g.srcLabels = c.srcEp!.labels;
        g.dstLabels = c.dstEp!.labels;
        g.at = groups.length;
        groups.push(g);
      } else if (this.#includeLabels) {
        if (g.srcLabels !== c.srcEp!.labels) g.srcLabels = intersect(g.srcLabels, c.srcEp!.labels);
        if (g.dstLabels !== c.dstEp!.labels) g.dstLabels = intersect(g.dstLabels, c.dstEp!.labels);
      }
      const sums = this.#sums;
      const n = g.at * SUMS;
      sums[n + NUM_FLOWS]!++;
      if (!c.reported) sums[n + STARTED]!++;
      if (completes) sums[n + COMPLETED]!++;
      if (c.localIsClient) {
        sums[n + BYTES_IN]! += c.s2cB;
        sums[n + PACKETS_IN]! += c.s2cP;
        sums[n + BYTES_OUT]! += c.c2sB;
        sums[n + PACKETS_OUT]! += c.c2sP;
      } else {
        sums[n + BYTES_IN]! += c.c2sB;
        sums[n + PACKETS_IN]! += c.c2sP;
        sums[n + BYTES_OUT]! += c.s2cB;
        sums[n + PACKETS_OUT]! += c.s2cP;
      }
      c.c2sB = c.c2sP = c.s2cB = c.s2cP = 0;
      c.active = false;
      c.reported = true;
      if (completes) {
        // TCP closed by FIN/RST stays one interval to absorb late packets (the last ACK);
        // idle-expired and non-TCP connections go now: a later packet is a new connection.
        if (c.proto === 6 && c.lastSeenMs + this.#tcpIdleMs > endMs) c.closed = true;
        else forget(table, k, c);
      }
    }
  }

  /**
   * At kind 0 every connection is its own record key, so keeping the keys between
   * flushes costs a `Group` per connection (~10 MB at 100k) for nothing a later flush
   * could not rebuild from the endpoints the connection keeps (~30 ms at 100k, against
   * the whole resolution that prepareKeys() moves before the flush). The flush's lines
   * still hold this flush's keys until they are taken.
   */
  #dropKindZeroKeys(): void {
    for (const a of [0, 1] as const) {
      if (this.#kind[a] !== 0 || this.#groups[a].size === 0) continue;
      const table = a === 0 ? this.#allow : this.#deny;
      this.#groups[a] = new GroupIndex(table.size);
      for (const c of table.values()) c.group = null;
    }
  }

  /** Resolves both endpoints (as they were when the connection began) and its Service, then its record key. */
  #resolveAndKey(c: Conn, kind: AggregationKind, action: Action, stamp: number, endpoints = true): void {
    const resolver = this.#resolver;
    if (endpoints) {
      c.srcEp = resolver.resolve(c.cIp, c.firstSeenMs);
      c.dstEp = resolver.resolve(c.sIp, c.firstSeenMs);
    }
    const nat = c.ct?.dnat ? c.ct : null;
    const svc =
      nat === null
        ? resolver.service(c.sIp, c.sPort, c.proto)
        : resolver.service(nat.origDstIp, nat.origDstPort, c.proto);
    this.#buildKey(c, svc, kind, action, stamp);
  }

  /**
   * Resolves endpoints and builds record keys of the connections that arrived since the
   * last flush, for at most about `budgetMs`, so that the flush finds them built: the
   * daemon calls it between drains, and a flush after 100k new connections otherwise
   * does all of it at once. The same work the flush would do, earlier; a key that goes
   * stale meanwhile (metadata reloaded, conntrack joined) is built again there. Returns
   * how many keys it built.
   */
  prepareKeys(budgetMs: number): number {
    const t0 = performance.now();
    const version = this.#resolver.version;
    const q = this.#unkeyed;
    let built = 0;
    let seen = 0;
    while (this.#unkeyedHead < q.length) {
      const c = q[this.#unkeyedHead++]!;
      if (++seen % 64 === 0 && performance.now() - t0 >= budgetMs) break;
      // Gone (released), or a flush would not give it a record key either.
      if (c.o === 0 || c.forwarded || (c.denied && c.netP <= 0 && !c.denySide)) continue;
      const a = c.denySide ? 1 : 0;
      const kind = this.#kind[a];
      const stamp = version * 1e6 + this.#optsVersion * 4 + kind;
      if (c.keyStamp === stamp) continue;
      this.#resolveAndKey(c, kind, a === 0 ? 'allow' : 'deny', stamp);
      built++;
    }
    if (this.#unkeyedHead >= q.length) {
      this.#unkeyed = [];
      this.#unkeyedHead = 0;
    }
    return built;
  }

  #buildKey(c: Conn, svcRef: ServiceRef | null, kind: AggregationKind, action: Action, stamp: number): void {
    const aggregated = kind >= 2;
    const src = this.#side(false, aggregated ? null : c.cIp, c.srcEp!, aggregated);
    const dst = this.#side(true, aggregated ? null : c.sIp, c.dstEp!, aggregated);
    const svc = this.#includeService && svcRef !== null ? this.#svc(svcRef, kind) : NO_SVC;
    const icmp = isIcmp(c.proto);
    const srcPort = kind >= 1 || icmp ? null : c.cPort;
    const dstPort = kind >= 3 || icmp ? null : c.sPort;
    const reporter: Reporter = c.localIsClient ? 'src' : 'dst';
    // Sides, Services and Pars are interned by value: identity stands for their fields.
    const dropReason = action === 'deny' ? c.dropReason : '';
    const par = parOf(c.proto, action, reporter, dropReason);
    const groups = this.#groups[action === 'allow' ? 0 : 1];
    let g = groups.find(src, srcPort, dst, dstPort, svc, par);
    if (g === undefined) {
      g = new Group(src, dst, srcPort, dstPort, svc, par);
      groups.add(g);
    }
    c.group = g;
    c.keyStamp = stamp;
  }

  #side(dest: boolean, ip: string | null, ep: Endpoint, aggregated: boolean): Side {
    const role = dest ? 1 : 0;
    const name = aggregated ? '-' : ep.name;
    let x: Side | undefined;
    if (ip === null) {
      x = this.#sidesByEp[role].get(ep);
      if (x !== undefined) return x;
    } else {
      x = this.#sidesByIp[role].get(ip);
      if (
        x !== undefined &&
        x.name === name &&
        x.nameAggr === ep.nameAggr &&
        x.namespace === ep.namespace &&
        x.type === ep.type
      )
        return x;
      if (x === undefined && this.#sides.size === 0) {
        // The common case (kinds 0-1: one Side per address): the index is its only home.
        x = new Side(this.#nextId++, dest, ip, ep, aggregated);
        this.#sidesByIp[role].set(ip, x);
        return x;
      }
    }
    // Rarer: endpoint objects equal by value, an address that moved to another endpoint.
    // '\u0001' cannot occur in names, IPs or numbers: an unambiguous separator.
    const key = flat(`${role}${ip}\u0001${ep.type}\u0001${ep.namespace}\u0001${ep.nameAggr}\u0001${name}|`);
    x = this.#sides.get(key);
    if (x === undefined) {
      x = new Side(this.#nextId++, dest, ip, ep, aggregated);
      this.#sides.set(key, x);
    }
    if (ip === null) this.#sidesByEp[role].set(ep, x);
    else if (!this.#sidesByIp[role].has(ip)) this.#sidesByIp[role].set(ip, x);
    return x;
  }

  #svc(svc: ServiceRef, kind: AggregationKind): SvcPart {
    const portName = kind >= 3 || svc.portName === '' ? '-' : svc.portName;
    const key = flat(`${svc.namespace}\u0001${svc.name}\u0001${portName}\u0001${svc.port}|`);
    let x = this.#svcs.get(key);
    if (x === undefined) {
      x = new SvcPart(this.#nextId++, svc.namespace, svc.name, portName, svc.port);
      this.#svcs.set(key, x);
    }
    return x;
  }

  stats(): AggregatorStats {
    this.#stats.connections = this.#allow.size + this.#deny.size;
    this.#stats.conntrackEntries = this.#ctEntries;
    this.#stats.connectionSlots = this.#nums.slots;
    return { ...this.#stats };
  }

  /**
   * One conntrack event or dumped entry. NEW/DUMP joins the entry to the connections of
   * its tuples (and NAT: the client's side shows the backend, both sides the Service);
   * DESTROY completes them. Idempotent: a repeated DESTROY changes nothing.
   */
  observeConntrack(e: ConntrackEvent): void {
    this.#stats.conntrackEvents++;
    if (this.#stats.lifecycleSource !== 'conntrack') {
      this.#stats.lifecycleSource = 'conntrack';
      this.#onLifecycle?.('conntrack');
    }
    if (e.type === ConntrackEventType.dumpDone) {
      this.#afterDump(e);
      return;
    }
    if (isStart(e)) {
      const entry = new CtEntry<Conn>(e);
      const known = this.#ct.get(entry.origKey);
      if (known?.id === entry.id) return; // a dump repeating what the events said
      // Conntrack's live entries never share a tuple: one we hold with either of these
      // tuples ended unheard (its DESTROY went with an overrun).
      if (known !== undefined) this.#forget(known);
      const knownReply = this.#ct.get(entry.replyKey);
      if (knownReply !== undefined) this.#forget(knownReply);
      this.#ctEntries++;
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

  /** The entry is gone: its connections are complete. */
  #forget(entry: CtEntry<Conn>): void {
    this.#ctEntries--;
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

  /** Joins a new connection to its conntrack entry, or waits for one until the next flush. */
  #joinNew(c: Conn, u: ConnectionUpdate): void {
    if (this.#stats.lifecycleSource !== 'conntrack') return; // no conntrack events at all
    const icmp = isIcmp(c.proto);
    const id = icmp ? (u.icmpId ?? 0) : 0;
    const tk = tupleKey(c.proto, c.cIp, icmp ? id : c.cPort, c.sIp, icmp ? id : c.sPort);
    const entry = this.#ct.get(tk);
    if (entry !== undefined) {
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
    if (entry.dnat) {
      // Seen before DNAT (the client's veth): name the backend. Both sides: the Service.
      if (preNat) {
        c.sIp = entry.backendIp;
        c.sPort = icmp ? 0 : entry.backendPort;
      }
    }
    c.keyStamp = -1;
  }

  /** Takes packets the kernel dropped off the allow side of the same interface and tuple. */
  #moveDenied(u: ConnectionUpdate): void {
    const a = this.#allow.get(u.key);
    if (a === undefined) {
      // The drop was drained before TC's count of the same packets (a packet TC counts
      // just after a generation flip can be dropped before the drop program flips): keep
      // the debt for the allowed side that comes with the next drain.
      const d = this.#earlyDenies.get(u.key);
      if (d === undefined) {
        this.#earlyDenies.set(u.key, {
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
    this.#payDebt(a);
  }

  /** Subtracts what was denied from the counters not yet flushed, never below zero. */
  #payDebt(c: Conn): void {
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
}
