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
import { EMPTY_TRACE, type Trace, TraceInterner } from './trace.ts';
import type { Direction, Flow, NamedPort, Policy, PolicyPeer } from './types.ts';
import { type PolicyIp, parseProtocol, policyIp } from './values.ts';

export interface PolicyEngineOptions {
  /** Cached traces kept; when full the cache starts over (counted). Default 65,536. */
  readonly cacheSize?: number;
}

const NO_LABELS: Labels = Object.freeze({});
const NO_PORTS: readonly NamedPort[] = Object.freeze([]);
const ZERO_IP: PolicyIp = Object.freeze({ family: 4, v4: 0, v6: 0n });

export class PolicyEngine {
  readonly #cacheSize: number;
  #model: PolicyModel = EMPTY_POLICY_MODEL;
  #pods = new Map<string, PodMeta>();
  #nsLabels = new Map<string, Labels>();
  #peers = new WeakMap<Endpoint, PolicyPeer>();
  #selections = new Map<string, Selection>();
  #cache = new Map<string, Trace>();
  readonly #interner = new TraceInterner();
  #nextPeerId = 1;
  #version = 0;
  readonly stats = { evaluations: 0, cacheHits: 0, cacheMisses: 0, cacheResets: 0 };

  constructor(opts: PolicyEngineOptions = {}) {
    this.#cacheSize = opts.cacheSize ?? 65_536;
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
    this.#model = buildPolicyModel(md.policyObjects ?? [], source);
    this.#pods = new Map(md.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
    this.#nsLabels = new Map(md.namespaces.map((n) => [n.name, n.labels]));
    this.#peers = new WeakMap();
    this.#selections.clear();
    this.#cache.clear();
    this.#version++;
    return this.#model.warnings;
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

  #makePeer(ep: Endpoint): PolicyPeer {
    const id = this.#nextPeerId++;
    if (ep.type === 'net') {
      return {
        id,
        kind: 'net',
        namespace: null,
        labels: NO_LABELS,
        nsLabels: GLOBAL_NAMESPACE,
        serviceAccount: null,
        saLabels: null,
        namedPorts: NO_PORTS,
      };
    }
    const namespaced = ep.type === 'wep' || (ep.type === 'ns' && ep.namespace !== '-');
    const ns = namespaced ? ep.namespace : null;
    const nsLabels =
      ns === null
        ? GLOBAL_NAMESPACE
        : Object.freeze({
            ...this.#nsLabels.get(ns),
            'kubernetes.io/metadata.name': ns,
            'projectcalico.org/name': ns,
          });
    if (ep.type !== 'wep') {
      return {
        id,
        kind: ep.type,
        namespace: ns,
        labels: ep.labels ?? NO_LABELS,
        nsLabels,
        serviceAccount: null,
        saLabels: null,
        namedPorts: NO_PORTS,
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
      id,
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
    };
  }

  #selection(local: PolicyPeer, dir: Direction): Selection {
    const key = `${dir === 'ingress' ? 'i' : 'e'}${local.id}`;
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
   * (ingress at the destination, egress at the source). IPs are canonical text.
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
  ): Trace {
    this.stats.evaluations++;
    const sp = this.peer(src);
    const dp = this.peer(dst);
    const local = direction === 'ingress' ? dp : sp;
    if (local.kind !== 'wep') return EMPTY_TRACE;
    const m = this.#model;
    let key = `${direction === 'ingress' ? 'i' : 'e'}${sp.id},${dp.id},${proto},${dstPort}`;
    if (m.usesSourcePorts) key += `,${srcPort}`;
    if (m.usesNets) key += `,${srcIp},${dstIp}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined) {
      this.stats.cacheHits++;
      return hit;
    }
    this.stats.cacheMisses++;
    const flow: Flow = {
      direction,
      src: sp,
      dst: dp,
      srcIp: policyIp(srcIp) ?? ZERO_IP,
      dstIp: policyIp(dstIp) ?? ZERO_IP,
      proto,
      srcPort,
      dstPort,
    };
    const t = this.traceOf(this.#selection(local, direction), flow);
    if (this.#cache.size >= this.#cacheSize) {
      this.#cache.clear();
      this.stats.cacheResets++;
    }
    this.#cache.set(key, t);
    return t;
  }

  /** The three traces for a flow given its local endpoint's selection (uncached). */
  traceOf(sel: Selection, flow: Flow): Trace {
    const matches = new Map<Policy, number>();
    const replaced = this.#model.replacedByStaged;
    const enforced: Hit[] = traceFor(sel, flow, 'enforced', replaced, matches);
    if (!sel.staged) return this.#interner.fromHits(enforced, enforced, enforced);
    const pending = traceFor(sel, flow, 'pending', replaced, matches);
    const all = traceFor(sel, flow, 'all', replaced, matches);
    return this.#interner.fromHits(all, enforced, pending);
  }

  /** Drops cached traces (for benchmarks measuring the uncached path). */
  clearCache(keepSelections = false): void {
    this.#cache.clear();
    if (!keepSelections) this.#selections.clear();
  }

  get cachedTraces(): number {
    return this.#cache.size;
  }
}
