// IP → endpoint (SPEC §1–2) and (cluster IP, port, proto) → Service, with a bounded
// per-IP history so that traffic is attributed to the endpoint that held the IP when the
// traffic was seen, even after the IP moved to another pod.

import { type Cidr, canonicalIp, cidrContains, parseCidr, parseIp, privacyOf } from './ip.ts';
import type { ClusterMetadata, Labels } from './kube.ts';

export type EndpointType = 'wep' | 'hep' | 'ns' | 'net';

export interface Endpoint {
  readonly type: EndpointType;
  /** Pod name (wep), node name (hep), network set name (ns), '-' (net). */
  readonly name: string;
  /** generateName + '*' or pod name (wep), node name (hep), set name (ns), 'pvt'/'pub' (net). */
  readonly nameAggr: string;
  /** '-' for hep, net and GlobalNetworkSets. */
  readonly namespace: string;
  /** null when unknown (net). Frozen; equal endpoints share one object. */
  readonly labels: Labels | null;
}

export interface ServiceRef {
  readonly namespace: string;
  readonly name: string;
  /** '' when the port is unnamed. */
  readonly portName: string;
  /** The Service (pre-DNAT) port. */
  readonly port: number;
}

export interface ResolverOptions {
  readonly nodeName: string;
  /** This node's own addresses (e.g. from os.networkInterfaces()); canonicalised here. */
  readonly nodeIps?: readonly string[];
  /** FlowLogsEnableHostEndpoint: node addresses resolve to `hep` (else to `net`). */
  readonly hostEndpoints: boolean;
  /** FlowLogsEnableNetworkSets. */
  readonly networkSets: boolean;
  /** How long superseded IP assignments are kept (≥ 2 × the longest flush interval). */
  readonly historyMs: number;
}

export const NET_PVT: Endpoint = Object.freeze({
  type: 'net',
  name: '-',
  nameAggr: 'pvt',
  namespace: '-',
  labels: null,
});
export const NET_PUB: Endpoint = Object.freeze({
  type: 'net',
  name: '-',
  nameAggr: 'pub',
  namespace: '-',
  labels: null,
});

interface Assignment {
  readonly fromMs: number;
  readonly ep: Endpoint | null;
}

const PROTO_NAMES: Readonly<Record<number, string>> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

function sameLabels(a: Labels | null, b: Labels | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}

function sameEndpoint(a: Endpoint | null, b: Endpoint | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return (
    a.type === b.type &&
    a.name === b.name &&
    a.nameAggr === b.nameAggr &&
    a.namespace === b.namespace &&
    sameLabels(a.labels, b.labels)
  );
}

export class EndpointResolver {
  readonly #opts: ResolverOptions;
  readonly #history = new Map<string, Assignment[]>();
  #services = new Map<string, ServiceRef>();
  #sets: { cidr: Cidr; ep: Endpoint }[] = [];
  #ownIps: Set<string>;
  #version = 0;
  #loaded = false;

  constructor(opts: ResolverOptions) {
    this.#opts = opts;
    this.#ownIps = new Set();
    this.update(
      { pods: [], services: [], nodes: [], namespaces: [], networkSets: [] },
      Number.NEGATIVE_INFINITY,
    );
    this.#loaded = false;
  }

  /** Bumped at every update(); callers cache resolutions per version. */
  get version(): number {
    return this.#version;
  }

  /** Number of IPs with history (for stats/tests). */
  get trackedIps(): number {
    return this.#history.size;
  }

  /**
   * Makes `md` the metadata in effect from `atMs` on. The first update is in effect
   * from the beginning of time (it describes what existed before we started).
   */
  update(md: ClusterMetadata, atMs: number): void {
    const from = this.#loaded ? atMs : Number.NEGATIVE_INFINITY;
    this.#loaded = true;
    const { nodeName, hostEndpoints } = this.#opts;

    const own = new Set<string>();
    for (const ip of this.#opts.nodeIps ?? []) {
      const c = canonicalIp(ip);
      if (c !== null) own.add(c);
    }
    const next = new Map<string, Endpoint>();
    let ownLabels: Labels | null = null;
    for (const n of md.nodes) {
      if (n.name === nodeName) {
        ownLabels = n.labels;
        for (const ip of n.ips) own.add(ip);
      }
      if (!hostEndpoints) continue;
      const ep: Endpoint = Object.freeze({
        type: 'hep',
        name: n.name,
        nameAggr: n.name,
        namespace: '-',
        labels: n.labels,
      });
      for (const ip of n.ips) next.set(ip, ep);
    }
    if (hostEndpoints) {
      const ep: Endpoint = Object.freeze({
        type: 'hep',
        name: nodeName,
        nameAggr: nodeName,
        namespace: '-',
        labels: ownLabels ?? Object.freeze({}),
      });
      for (const ip of own) if (!next.has(ip)) next.set(ip, ep);
    }
    for (const p of md.pods) {
      if (p.hostNetwork || p.ips.length === 0) continue;
      const ep: Endpoint = Object.freeze({
        type: 'wep',
        name: p.name,
        nameAggr: p.generateName !== null ? `${p.generateName}*` : p.name,
        namespace: p.namespace,
        labels: p.labels,
      });
      for (const ip of p.ips) next.set(ip, ep);
    }
    this.#ownIps = own;

    // Record changes in the per-IP history.
    for (const [ip, ep] of next) {
      const h = this.#history.get(ip);
      if (h === undefined) {
        this.#history.set(ip, [{ fromMs: from, ep }]);
        continue;
      }
      const last = h[h.length - 1]!;
      if (!sameEndpoint(last.ep, ep)) h.push({ fromMs: from, ep });
    }
    for (const [ip, h] of this.#history) {
      if (next.has(ip)) continue;
      if (h[h.length - 1]!.ep !== null) h.push({ fromMs: from, ep: null });
    }
    this.#prune(atMs);

    const services = new Map<string, ServiceRef>();
    for (const s of md.services) {
      for (const ip of s.clusterIps) {
        for (const p of s.ports) {
          services.set(`${ip}|${p.port}|${p.protocol}`, {
            namespace: s.namespace,
            name: s.name,
            portName: p.name,
            port: p.port,
          });
        }
      }
    }
    this.#services = services;

    const sets: { cidr: Cidr; ep: Endpoint }[] = [];
    if (this.#opts.networkSets) {
      for (const ns of md.networkSets) {
        const ep: Endpoint = Object.freeze({
          type: 'ns',
          name: ns.name,
          nameAggr: ns.name,
          namespace: ns.namespace ?? '-',
          labels: ns.labels,
        });
        for (const n of ns.nets) {
          const cidr = parseCidr(n);
          if (cidr !== null) sets.push({ cidr, ep });
        }
      }
      sets.sort((a, b) => b.cidr.prefix - a.cidr.prefix); // longest prefix first
    }
    this.#sets = sets;
    this.#version++;
  }

  #prune(nowMs: number): void {
    if (!Number.isFinite(nowMs)) return;
    const cutoff = nowMs - this.#opts.historyMs;
    for (const [ip, h] of this.#history) {
      // Keep the last assignment in effect at the cutoff and everything after it.
      let keepFrom = 0;
      for (let i = h.length - 1; i > 0; i--) {
        if (h[i]!.fromMs <= cutoff) {
          keepFrom = i;
          break;
        }
      }
      // A gap (the IP held by nothing) at the cutoff with a holder after it: keep the holder
      // before the gap too. Connections are resolved at their first-seen time for their
      // whole life, so one first seen before the gap would otherwise fall on the gap and be
      // `net` for good, even after the pod is back. One extra entry per IP at most.
      if (keepFrom > 0 && h[keepFrom]!.ep === null && keepFrom < h.length - 1) keepFrom--;
      if (keepFrom > 0) h.splice(0, keepFrom);
      if (h.length === 1 && h[0]!.ep === null && h[0]!.fromMs <= cutoff) this.#history.delete(ip);
    }
  }

  /**
   * The endpoint that held `ip` at `atMs`. Before the first known assignment of an IP the
   * first holder is assumed (metadata lags reality); an IP held by nothing is `ns`/`net`.
   */
  resolve(ip: string, atMs: number): Endpoint {
    let h = this.#history.get(ip);
    let key = ip;
    if (h === undefined && ip.includes(':')) {
      key = canonicalIp(ip) ?? ip;
      h = this.#history.get(key);
    }
    if (h !== undefined) {
      let a = h[0]!;
      for (let i = h.length - 1; i >= 0; i--) {
        if (h[i]!.fromMs <= atMs) {
          a = h[i]!;
          break;
        }
      }
      if (a.ep !== null) return a.ep;
    }
    if (this.#sets.length > 0) {
      const p = parseIp(key);
      if (p !== null) for (const s of this.#sets) if (cidrContains(s.cidr, p)) return s.ep;
    }
    return privacyOf(key) === 'pvt' ? NET_PVT : NET_PUB;
  }

  /** The Service whose cluster IP, port and protocol these are, if any. */
  service(ip: string, port: number, proto: number): ServiceRef | null {
    if (this.#services.size === 0) return null;
    const p = PROTO_NAMES[proto];
    if (p === undefined) return null;
    const key = ip.includes(':') ? (canonicalIp(ip) ?? ip) : ip;
    return this.#services.get(`${key}|${port}|${p}`) ?? null;
  }

  /** Whether `ip` is one of this node's own addresses (options + metadata Node). */
  isNodeIp(ip: string): boolean {
    if (this.#ownIps.has(ip)) return true;
    if (!ip.includes(':')) return false;
    const c = canonicalIp(ip);
    return c !== null && this.#ownIps.has(c);
  }
}
