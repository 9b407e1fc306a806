// The policy stage: metadata in (pods, namespaces, service accounts, policy objects),
// one Trace per (direction, endpoints, protocol, destination port) out. Evaluated once per
// new connection and cached; the cache key adds the source port and both IPs only when
// some rule tests them. Every update (a policy or a label changed) starts a new model
// and empties the caches: entries cannot outlive the labels they were computed from.

import type { ClusterMetadata, Labels, PodMeta } from '../enrich/kube.ts';
import type { Endpoint } from '../enrich/resolver.ts';
import { type Hit, type Selection, selectPolicies, traceFor } from './evaluate.ts';
import { buildPolicyModel, EMPTY_POLICY_MODEL, type PolicyModel } from './model.ts';
import { GLOBAL_NAMESPACE } from './selector.ts';
import type { PolicyStage } from './stage.ts';
import { EMPTY_TRACE, type Trace, TraceInterner } from './trace.ts';
import type { Direction, Flow, NamedPort, Policy, PolicyPeer } from './types.ts';
import { type PolicyIp, parseProtocol, policyIp } from './values.ts';

export interface PolicyEngineOptions {
  /** This node's name: onNode() tells which pods run here. */
  readonly nodeName?: string;
  /** Cached traces kept; when full the cache starts over (counted). Default 65,536. */
  readonly cacheSize?: number;
}

const NO_LABELS: Labels = Object.freeze({});
const NO_PORTS: readonly NamedPort[] = Object.freeze([]);
const ZERO_IP: PolicyIp = Object.freeze({ family: 4, v4: 0, v6: 0n });
const ZERO_IP6: PolicyIp = Object.freeze({ family: 6, v4: 0, v6: 0n });

/** Small codes for the protocols a cache key packs; others take the string-keyed path. */
const PROTO_CODE: Readonly<Record<number, number>> = { 6: 1, 17: 2, 132: 3, 1: 4, 58: 5, 136: 6 };
const MAX_PEER_ID = 1 << 20;

/**
 * The ICMP message a connection is evaluated on: the one that opened it. An echo reply
 * seen first (a ping already running at start-up) answers an echo request, which is what
 * conntrack created the connection for and what Calico's rules were tested against.
 */
function openingIcmp(proto: number, icmp: number): number {
  if (icmp < 0 || icmp > 0xffff) return -1;
  if (proto === 1 && icmp >> 8 === 0) return 8 << 8;
  if (proto === 58 && icmp >> 8 === 129) return 128 << 8;
  return icmp;
}

export class PolicyEngine implements PolicyStage {
  readonly #cacheSize: number;
  readonly #nodeName: string | null;
  #model: PolicyModel = EMPTY_POLICY_MODEL;
  #pods = new Map<string, PodMeta>();
  #nsLabels = new Map<string, Labels>();
  #nsViews = new Map<string, Labels>();
  #peers = new WeakMap<Endpoint, PolicyPeer>();
  /** With rules testing nets: a peer per (endpoint, IP), sharing the endpoint's view. */
  #ipPeers = new WeakMap<Endpoint, Map<string, PolicyPeer>>();
  #ipPeerCount = 0;
  #selections = new Map<number, Selection>();
  /** Local endpoint and direction → (remote peer, protocol, port, family) → trace. */
  #cache = new Map<number, Map<number, Trace>>();
  /** Keys that do not pack into a number (source ports tested, rare protocols). */
  #cacheByText = new Map<string, Trace>();
  #cached = 0;
  readonly #interner = new TraceInterner();
  #nextPeerId = 1;
  #version = 0;
  readonly #notesSaid = new Set<string>();
  readonly stats = { evaluations: 0, cacheHits: 0, cacheMisses: 0, cacheResets: 0 };

  constructor(opts: PolicyEngineOptions = {}) {
    this.#cacheSize = opts.cacheSize ?? 65_536;
    this.#nodeName = opts.nodeName ?? null;
  }

  get model(): PolicyModel {
    return this.#model;
  }

  /** Bumped at every update. */
  get version(): number {
    return this.#version;
  }

  /** Rebuilds the model from `md` (its policy objects and labels); returns its warnings. */
  update(md: ClusterMetadata, source = 'metadata'): readonly string[] {
    this.#model = buildPolicyModel(md.policyObjects ?? [], source, md.services);
    // A note (a part of a policy not evaluated) is said once, not at every metadata change.
    if (this.#notesSaid.size > 100_000) this.#notesSaid.clear();
    const fresh = this.#model.notes.filter((n) => !this.#notesSaid.has(n));
    for (const n of fresh) this.#notesSaid.add(n);
    this.#pods = new Map(md.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
    this.#nsLabels = new Map(md.namespaces.map((n) => [n.name, n.labels]));
    this.#resetPeers();
    this.#version++;
    return fresh.length === 0 ? this.#model.warnings : [...this.#model.warnings, ...fresh];
  }

  #resetPeers(): void {
    // Every cache keyed by peer ids goes with them, so ids can start again.
    this.#peers = new WeakMap();
    this.#nsViews.clear();
    this.#ipPeers = new WeakMap();
    this.#ipPeerCount = 0;
    this.#selections.clear();
    this.#cache.clear();
    this.#cacheByText.clear();
    this.#cached = 0;
    this.#nextPeerId = 1;
  }

  /** Whether `ep` is a pod scheduled on this node (so both ends of its traffic may be enforced here). */
  onNode(ep: Endpoint): boolean {
    return (
      ep.type === 'wep' &&
      this.#nodeName !== null &&
      this.#pods.get(`${ep.namespace}/${ep.name}`)?.nodeName === this.#nodeName
    );
  }

  /** The policy view of a resolved endpoint (Calico's extra labels added). */
  peer(ep: Endpoint): PolicyPeer {
    let p = this.#peers.get(ep);
    if (p === undefined) {
      p = this.#makePeer(ep);
      this.#peers.set(ep, p);
    }
    return p;
  }

  /**
   * The peer as the cache must tell it apart: an endpoint without a pod behind it (an
   * unknown IP, a network set, a host) per IP when some rule tests nets. A pod is one
   * peer: its addresses are fixed for its life (the key adds the address family).
   */
  #peerAt(ep: Endpoint, ip: string): PolicyPeer {
    const base = this.peer(ep);
    if (!this.#model.usesNets || base.kind === 'wep') return base;
    let byIp = this.#ipPeers.get(ep);
    if (byIp === undefined) {
      byIp = new Map();
      this.#ipPeers.set(ep, byIp);
    }
    let p = byIp.get(ip);
    if (p === undefined) {
      if (this.#ipPeerCount >= this.#cacheSize) this.#resetPeers();
      p = { ...base, id: this.#nextPeerId++ };
      byIp.set(ip, p);
      this.#ipPeerCount++;
    }
    return p;
  }

  #makePeer(ep: Endpoint): PolicyPeer {
    const id = this.#nextPeerId++;
    const base = { id, epId: id };
    if (ep.type === 'net') {
      return {
        ...base,
        kind: 'net',
        namespace: null,
        labels: NO_LABELS,
        nsLabels: GLOBAL_NAMESPACE,
        serviceAccount: null,
        saLabels: null,
        namedPorts: NO_PORTS,
        profile: '',
      };
    }
    const namespaced = ep.type === 'wep' || (ep.type === 'ns' && ep.namespace !== '-');
    const ns = namespaced ? ep.namespace : null;
    const nsLabels = ns === null ? GLOBAL_NAMESPACE : this.#namespaceLabels(ns);
    if (ep.type !== 'wep') {
      return {
        ...base,
        kind: ep.type,
        namespace: ns,
        labels: ep.labels ?? NO_LABELS,
        nsLabels,
        serviceAccount: null,
        saLabels: null,
        namedPorts: NO_PORTS,
        profile: '',
      };
    }
    const pod = this.#pods.get(`${ep.namespace}/${ep.name}`);
    const sa = pod?.serviceAccount ?? 'default';
    const namedPorts: NamedPort[] = [];
    for (const cp of pod?.containerPorts ?? []) {
      try {
        namedPorts.push({ name: cp.name, port: cp.port, proto: parseProtocol(cp.protocol, 'containerPort') });
      } catch {
        // A port with an unknown protocol cannot be named by a policy either.
      }
    }
    return {
      ...base,
      kind: 'wep',
      namespace: ns,
      labels: Object.freeze({
        ...ep.labels,
        'projectcalico.org/namespace': ep.namespace,
        'projectcalico.org/orchestrator': 'k8s',
        'projectcalico.org/serviceaccount': sa,
      }),
      nsLabels,
      serviceAccount: sa,
      saLabels:
        this.#model.serviceAccounts.get(`${ep.namespace}/${sa}`) ??
        Object.freeze({ 'projectcalico.org/name': sa }),
      namedPorts,
      profile: `__PROFILE__.kns.${ep.namespace}`,
    };
  }

  /** One frozen label map per namespace, with the names Kubernetes and Calico add. */
  #namespaceLabels(ns: string): Labels {
    let l = this.#nsViews.get(ns);
    if (l === undefined) {
      l = Object.freeze({
        ...this.#nsLabels.get(ns),
        'kubernetes.io/metadata.name': ns,
        'projectcalico.org/name': ns,
      });
      this.#nsViews.set(ns, l);
    }
    return l;
  }

  #selection(local: PolicyPeer, dir: Direction): Selection {
    const key = local.epId * 2 + (dir === 'ingress' ? 0 : 1);
    let s = this.#selections.get(key);
    if (s === undefined) {
      if (this.#selections.size >= this.#cacheSize) this.#selections.clear();
      s = selectPolicies(this.#model, local, dir);
      this.#selections.set(key, s);
    }
    return s;
  }

  /**
   * The trace of a connection from `src` to `dst` for the direction the reporter enforces
   * (ingress at the destination, egress at the source). IPs are canonical text. `icmp`:
   * for ICMP/ICMPv6, type << 8 | code of the connection's first message (-1 unknown).
   */
  evaluate(
    direction: Direction,
    src: Endpoint,
    dst: Endpoint,
    srcIp: string,
    dstIp: string,
    proto: number,
    srcPort: number,
    dstPort: number,
    icmp = -1,
  ): Trace {
    this.stats.evaluations++;
    if (this.#nextPeerId >= MAX_PEER_ID) this.#resetPeers();
    const sp = this.#peerAt(src, srcIp);
    const dp = this.#peerAt(dst, dstIp);
    const ingress = direction === 'ingress';
    const local = ingress ? dp : sp;
    if (local.kind !== 'wep') return EMPTY_TRACE;
    const remote = ingress ? sp : dp;
    const family = dstIp.includes(':') ? 1 : 0;
    const pc = PROTO_CODE[proto] ?? 0;
    // ICMP has no ports: the key's port slot holds the message when some rule tests it.
    // An unknown message (-1) takes the string-keyed path.
    const icmpProto = proto === 1 || proto === 58;
    const msg = icmpProto ? openingIcmp(proto, icmp) : -1;
    const keyPort = icmpProto && this.#model.usesIcmp ? msg : dstPort;
    // Packed key: remote id < 2^20, 3 bits of protocol, 16 of port, 1 of family (40 bits).
    let byRemote: Map<number, Trace> | undefined;
    let packed = -1;
    let text = '';
    if (pc !== 0 && !this.#model.usesSourcePorts && keyPort >= 0) {
      packed = ((remote.id * 8 + pc) * 65_536 + keyPort) * 2 + family;
      byRemote = this.#cache.get(local.id * 2 + (ingress ? 0 : 1));
      const hit = byRemote?.get(packed);
      if (hit !== undefined) {
        this.stats.cacheHits++;
        return hit;
      }
    } else {
      text = `${ingress ? 'i' : 'e'}${sp.id},${dp.id},${proto},${keyPort},${srcPort},${family}`;
      const hit = this.#cacheByText.get(text);
      if (hit !== undefined) {
        this.stats.cacheHits++;
        return hit;
      }
    }
    this.stats.cacheMisses++;
    const flow: Flow = {
      direction,
      src: sp,
      dst: dp,
      // Addresses are parsed only when some rule tests nets; ipVersion needs only the family.
      srcIp: this.#model.usesNets ? (policyIp(srcIp) ?? ZERO_IP) : family === 1 ? ZERO_IP6 : ZERO_IP,
      dstIp: this.#model.usesNets ? (policyIp(dstIp) ?? ZERO_IP) : family === 1 ? ZERO_IP6 : ZERO_IP,
      proto,
      srcPort,
      dstPort,
      srcAddr: srcIp,
      dstAddr: dstIp,
      icmp: msg,
    };
    const t = this.traceOf(this.#selection(local, direction), flow);
    if (this.#cached >= this.#cacheSize) {
      this.#cache.clear();
      this.#cacheByText.clear();
      this.#cached = 0;
      this.stats.cacheResets++;
      byRemote = undefined;
    }
    if (packed < 0) {
      this.#cacheByText.set(text, t);
    } else {
      if (byRemote === undefined) {
        byRemote = new Map();
        this.#cache.set(local.id * 2 + (ingress ? 0 : 1), byRemote);
      }
      byRemote.set(packed, t);
    }
    this.#cached++;
    return t;
  }

  /** The three traces for a flow given its local endpoint's selection (uncached). */
  traceOf(sel: Selection, flow: Flow): Trace {
    const replaced = this.#model.replacedByStaged;
    if (!sel.staged) {
      const enforced: Hit[] = traceFor(sel, flow, 'enforced', replaced, null);
      return this.#interner.fromHits(enforced, enforced, enforced);
    }
    const matches = new Map<Policy, number>();
    const enforced: Hit[] = traceFor(sel, flow, 'enforced', replaced, matches);
    const pending = traceFor(sel, flow, 'pending', replaced, matches);
    const all = traceFor(sel, flow, 'all', replaced, matches);
    return this.#interner.fromHits(all, enforced, pending);
  }

  /** Drops cached traces (for benchmarks measuring the uncached path). */
  clearCache(keepSelections = false): void {
    this.#cache.clear();
    this.#cacheByText.clear();
    this.#cached = 0;
    if (!keepSelections) this.#selections.clear();
  }

  get cachedTraces(): number {
    return this.#cached;
  }
}
