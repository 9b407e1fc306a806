// Record keys: what a flow log record is besides its counters (both sides, ports,
// Service, proto/action/reporter/drop reason, policy trace), interned by value so that
// connections between the same endpoints share one key, each part carrying its JSON.
//
// One KeyInterner per aggregator owns every part and key it made, and sweeps after each
// flush those that no connection used in it.

import { flat } from '../common/flat.ts';
import type { Labels } from '../enrich/kube.ts';
import type { Endpoint, ServiceRef } from '../enrich/resolver.ts';
import type { Trace } from '../policy/trace.ts';
import { type Conn, isIcmp } from './connections.ts';
import { type Action, type AggregationKind, protoName, type Reporter } from './record.ts';

const q = JSON.stringify;

/**
 * What one endpoint says as a record's source or destination, besides its IP, and the
 * JSON around it; shared by every Side of that endpoint object, role and kind group (at
 * kind 0 there is a Side per peer address, and most peers are one 'pvt' or 'pub').
 */
export class SideText {
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

/**
 * One side (source or destination) of a record key: type, namespace, aggregated name,
 * name and IP as the kind leaves them. Interned by value, so connections between the
 * same endpoints share one Side (endpoint pairs repeat a lot).
 */
export class Side {
  readonly id: number;
  /** Text form; never needs JSON escaping (digits, dots, colons, hex). */
  readonly ip: string | null;
  readonly text: SideText;
  /** Flush in which a record last used it; unused Sides are dropped after each flush. */
  stamp = 0;
  constructor(id: number, ip: string | null, text: SideText) {
    this.id = id;
    this.ip = ip;
    this.text = text;
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

/** The destination Service part of a record key (interned by value). */
export class SvcPart {
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
export class Par {
  readonly id: number;
  readonly proto: string;
  readonly action: Action;
  readonly reporter: Reporter;
  readonly dropReason: string;
  readonly json: string;
  constructor(id: number, proto: string, action: Action, reporter: Reporter, dropReason: string) {
    this.id = id;
    this.proto = proto;
    this.action = action;
    this.reporter = reporter;
    this.dropReason = dropReason;
    const drop = dropReason === '' ? '' : `,"drop_reason":${q(dropReason)}`;
    this.json = flat(`"proto":${q(proto)},"action":${q(action)},"reporter":${q(reporter)}${drop}`);
  }
}

/**
 * One record key (everything but counters and labels), interned by value per action and
 * kept while connections map to it; its labels and place in the sums are the current flush's.
 */
export class Group {
  readonly src: Side;
  readonly dst: Side;
  readonly srcPort: number | null;
  readonly dstPort: number | null;
  readonly svc: SvcPart;
  readonly par: Par;
  /** The policy trace (interned: equal traces are one object); null when policies are off. */
  readonly pol: Trace | null;
  /** Flush whose record the labels and `at` below belong to. */
  stamp = 0;
  /** Index of this record in the flush (its counters are at sums[at * SUMS], lines.ts). */
  at = 0;
  srcLabels: Labels | null = null;
  dstLabels: Labels | null = null;
  constructor(
    src: Side,
    dst: Side,
    srcPort: number | null,
    dstPort: number | null,
    svc: SvcPart,
    par: Par,
    pol: Trace | null,
  ) {
    this.src = src;
    this.dst = dst;
    this.srcPort = srcPort;
    this.dstPort = dstPort;
    this.svc = svc;
    this.par = par;
    this.pol = pol;
  }
}

/**
 * One action's record keys, found by their parts (interned objects and ports) through an
 * open-addressing table of indexes: no key string per record and no string hashing, and
 * at kind 0 there is a record key per connection. Rebuilt, compacted, after each sweep.
 */
export class GroupIndex {
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
    pol: Trace | null,
  ): Group | undefined {
    const mask = this.#slots.length - 1;
    for (let i = hashKey(src, srcPort, dst, dstPort, svc, par, pol) & mask; ; i = (i + 1) & mask) {
      const at = this.#slots[i]!;
      if (at === 0) return undefined;
      const g = this.#groups[at - 1]!;
      if (
        g.src === src &&
        g.dst === dst &&
        g.srcPort === srcPort &&
        g.dstPort === dstPort &&
        g.svc === svc &&
        g.par === par &&
        g.pol === pol
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
    let i = hashKey(g.src, g.srcPort, g.dst, g.dstPort, g.svc, g.par, g.pol) & mask;
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
  pol: Trace | null,
): number {
  let h = Math.imul(src.id | 0, 0x9e3779b1);
  h = Math.imul(h ^ (dst.id | 0), 0x85ebca77) ^ ((srcPort ?? -1) << 7);
  h = Math.imul(h ^ (dstPort ?? -1), 0xc2b2ae3d) ^ (svc.id | 0);
  h = Math.imul(h ^ par.id, 0x27d4eb2f) ^ ((pol?.id ?? 0) << 11);
  return (h ^ (h >>> 15)) >>> 0;
}

const EMPTY_LABELS: Labels = Object.freeze({});

export function intersectLabels(a: Labels | null, b: Labels | null): Labels {
  if (a === null || b === null) return EMPTY_LABELS;
  const out: Record<string, string> = {};
  for (const k in a) if (b[k] === a[k]) out[k] = a[k]!;
  return out;
}

/**
 * Every record key and part one aggregator made, by value. A part lives while a record
 * of the last flush used it: sweep() forgets the rest after each flush.
 */
export class KeyInterner {
  /** [allow, deny] record keys. */
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
  /** Side texts by endpoint object, at (destination ? 2 : 0) + (aggregated ? 1 : 0). */
  readonly #sideTexts = new WeakMap<Endpoint, (SideText | undefined)[]>();
  readonly #svcs = new Map<string, SvcPart>();
  #nextId = 1;
  /** Without a drop reason, by (proto << 2 | deny << 1 | dst reporter); with one, by name too. */
  readonly #parsPlain: (Par | undefined)[] = [];
  readonly #parsDrop = new Map<string, Par>();
  #nextParId = 1;

  /** Record keys of an action (0 allow, 1 deny). */
  size(a: 0 | 1): number {
    return this.#groups[a].size;
  }

  /**
   * The record key of a connection whose endpoints (srcEp, dstEp) are resolved, at `kind`,
   * with `svcRef` its destination Service and `pol` its policy trace. Sides, Services,
   * Pars and traces are interned by value: identity stands for their fields.
   */
  key(
    c: Conn,
    svcRef: ServiceRef | null,
    kind: AggregationKind,
    action: Action,
    includeService: boolean,
    pol: Trace | null = null,
  ): Group {
    const aggregated = kind >= 2;
    // '' is an overflow record's unknown address (overflow.ts): null, as aggregated.
    const src = this.#side(false, aggregated || c.cIp === '' ? null : c.cIp, c.srcEp!, aggregated);
    const dst = this.#side(true, aggregated || c.sIp === '' ? null : c.sIp, c.dstEp!, aggregated);
    const svc = includeService && svcRef !== null ? this.#svc(svcRef, kind) : NO_SVC;
    const icmp = isIcmp(c.proto);
    // An overflow record's ports are not known (overflow.ts).
    const srcPort = kind >= 1 || icmp || c.overflow ? null : c.cPort;
    const dstPort = kind >= 3 || icmp || c.overflow ? null : c.sPort;
    const reporter: Reporter = c.localIsClient ? 'src' : 'dst';
    const dropReason = action === 'deny' ? c.dropReason : '';
    const par = this.#par(c.proto, action, reporter, dropReason);
    const groups = this.#groups[action === 'allow' ? 0 : 1];
    let g = groups.find(src, srcPort, dst, dstPort, svc, par, pol);
    if (g === undefined) {
      g = new Group(src, dst, srcPort, dstPort, svc, par, pol);
      groups.add(g);
    }
    return g;
  }

  /** Forgets record keys, sides and Services that no record of flush `no` used. */
  sweep(no: number): void {
    for (const m of this.#groups) m.sweep((g) => g.stamp === no);
    for (const [k, x] of this.#sides) if (x.stamp !== no) this.#sides.delete(k);
    for (const m of this.#sidesByIp) for (const [k, x] of m) if (x.stamp !== no) m.delete(k);
    for (const m of this.#sidesByEp) for (const [k, x] of m) if (x.stamp !== no) m.delete(k);
    for (const [k, x] of this.#svcs) if (x.stamp !== no) this.#svcs.delete(k);
  }

  /** Forgets an action's record keys (kind 0; see FlowAggregator), sized for `expected` new ones. */
  dropKeys(a: 0 | 1, expected: number): void {
    this.#groups[a] = new GroupIndex(expected);
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
        x = new Side(this.#nextId++, ip, this.#sideText(dest, ep, aggregated));
        this.#sidesByIp[role].set(ip, x);
        return x;
      }
    }
    // Rarer: endpoint objects equal by value, an address that moved to another endpoint.
    // '\u0001' cannot occur in names, IPs or numbers: an unambiguous separator.
    const key = flat(`${role}${ip}\u0001${ep.type}\u0001${ep.namespace}\u0001${ep.nameAggr}\u0001${name}|`);
    x = this.#sides.get(key);
    if (x === undefined) {
      x = new Side(this.#nextId++, ip, this.#sideText(dest, ep, aggregated));
      this.#sides.set(key, x);
    }
    if (ip === null) this.#sidesByEp[role].set(ep, x);
    else if (!this.#sidesByIp[role].has(ip)) this.#sidesByIp[role].set(ip, x);
    return x;
  }

  #sideText(dest: boolean, ep: Endpoint, aggregated: boolean): SideText {
    let all = this.#sideTexts.get(ep);
    if (all === undefined) {
      all = [];
      this.#sideTexts.set(ep, all);
    }
    const i = (dest ? 2 : 0) + (aggregated ? 1 : 0);
    let t = all[i];
    if (t === undefined) {
      t = new SideText(dest, ep, aggregated);
      all[i] = t;
    }
    return t;
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

  #par(proto: number, action: Action, reporter: Reporter, dropReason: string): Par {
    const i = (proto << 2) | (action === 'deny' ? 2 : 0) | (reporter === 'dst' ? 1 : 0);
    if (dropReason === '') {
      let p = this.#parsPlain[i];
      if (p === undefined) {
        p = new Par(this.#nextParId++, protoName(proto), action, reporter, '');
        this.#parsPlain[i] = p;
      }
      return p;
    }
    const k = `${i}|${dropReason}`;
    let p = this.#parsDrop.get(k);
    if (p === undefined) {
      p = new Par(this.#nextParId++, protoName(proto), action, reporter, dropReason);
      this.#parsDrop.set(k, p);
    }
    return p;
  }
}
