// The policy set in effect: every policy object of the metadata (Kubernetes and Calico
// kinds, Tiers, ServiceAccounts) compiled, ordered as Felix orders them (tiers by order
// then name, the `default` tier at 1,000,000 unless a Tier says otherwise; policies in a
// tier by order then name, a staged policy just before the enforced one of the same name)
// and indexed by namespace, so an endpoint only tests its own namespace's policies and the
// global ones. A policy that fails to compile is left out with a warning naming it; the
// others still apply.

import type { ServiceMeta } from '../enrich/kube.ts';
import { type CalicoKind, type CompileContext, compileCalicoPolicy } from './calico.ts';
import { compileKubernetesPolicy } from './k8s.ts';
import type { Labels, Policy, ServiceEndpoints, TierSpec } from './types.ts';
import { isObj, PolicyError } from './values.ts';

export const DEFAULT_TIER_ORDER = 1_000_000;

export interface TierPolicies {
  readonly tier: TierSpec;
  /** Non-namespaced policies, in evaluation order. */
  readonly global: readonly Policy[];
  /** Namespaced policies by namespace, each in evaluation order. */
  readonly byNamespace: ReadonlyMap<string, readonly Policy[]>;
}

export interface PolicyModel {
  readonly tiers: readonly TierPolicies[];
  readonly policyCount: number;
  readonly stagedCount: number;
  /** Whether any rule tests source ports or IP nets (then those join the trace cache key). */
  readonly usesSourcePorts: boolean;
  readonly usesNets: boolean;
  /** Whether any rule tests ICMP type/code (then the ICMP message joins the trace cache key). */
  readonly usesIcmp: boolean;
  /** Service account labels by `<ns>/<name>`. */
  readonly serviceAccounts: ReadonlyMap<string, Labels>;
  /** Identities of enforced policies a staged policy of the same identity replaces in pending traces. */
  readonly replacedByStaged: ReadonlySet<string>;
  readonly warnings: readonly string[];
  /**
   * One line per policy with a part that is not evaluated (HTTP matches, host endpoint
   * parts): stable across rebuilds, so the engine can say each once.
   */
  readonly notes: readonly string[];
}

export const EMPTY_POLICY_MODEL: PolicyModel = Object.freeze({
  tiers: [],
  policyCount: 0,
  stagedCount: 0,
  usesSourcePorts: false,
  usesNets: false,
  usesIcmp: false,
  serviceAccounts: new Map<string, Labels>(),
  replacedByStaged: new Set<string>(),
  warnings: [],
  notes: [],
});

function sortKey(p: Policy): string {
  return p.staged ? p.traceName.replace('staged:', '') : p.traceName;
}

export function comparePolicies(a: Policy, b: Policy): number {
  if (a.order !== b.order) return a.order < b.order ? -1 : 1;
  const ka = sortKey(a);
  const kb = sortKey(b);
  if (ka !== kb) return ka < kb ? -1 : 1;
  return a.staged === b.staged ? 0 : a.staged ? -1 : 1;
}

function isCalicoApi(apiVersion: unknown): boolean {
  return typeof apiVersion === 'string' && apiVersion.includes('projectcalico.org/');
}

/**
 * Services by `<namespace>/<name>` as `services` matches see them: the endpoints of their
 * EndpointSlices (the label kubernetes.io/service-name names the Service, as Felix reads
 * it), and, while a Service has an endpoint, its cluster IPs and ports.
 */
function serviceIndex(
  objects: readonly unknown[],
  services: readonly ServiceMeta[],
): Map<string, ServiceEndpoints> {
  const out = new Map<string, { ips: Set<string>; ipPorts: Set<string> }>();
  for (const item of objects) {
    if (!isObj(item) || item.kind !== 'EndpointSlice') continue;
    const md = isObj(item.metadata) ? item.metadata : {};
    const svc = isObj(md.labels) ? md.labels['kubernetes.io/service-name'] : undefined;
    if (typeof svc !== 'string' || svc === '' || typeof md.namespace !== 'string') continue;
    const spec = isObj(item.spec) ? item.spec : {};
    const key = `${md.namespace}/${svc}`;
    let e = out.get(key);
    if (e === undefined) {
      e = { ips: new Set(), ipPorts: new Set() };
      out.set(key, e);
    }
    const addrs = Array.isArray(spec.addresses) ? (spec.addresses as string[]) : [];
    const ports = Array.isArray(spec.ports) ? (spec.ports as { port: number; protocol: string }[]) : [];
    for (const a of addrs) {
      e.ips.add(a);
      for (const p of ports) {
        const proto = PROTO_NUMBERS[p.protocol];
        if (proto !== undefined) e.ipPorts.add(`${a}|${proto}|${p.port}`);
      }
    }
  }
  for (const s of services) {
    const e = out.get(`${s.namespace}/${s.name}`);
    if (e === undefined || e.ipPorts.size === 0) continue;
    for (const ip of s.clusterIps)
      for (const p of s.ports) {
        const proto = PROTO_NUMBERS[p.protocol];
        if (proto !== undefined) e.ipPorts.add(`${ip}|${proto}|${p.port}`);
      }
  }
  return out;
}

const PROTO_NUMBERS: Readonly<Record<string, number>> = { TCP: 6, UDP: 17, SCTP: 132 };

export function buildPolicyModel(
  objects: readonly unknown[],
  source = 'metadata',
  services: readonly ServiceMeta[] = [],
): PolicyModel {
  const ctx: CompileContext = { services: serviceIndex(objects, services) };
  const warnings: string[] = [];
  const notes: string[] = [];
  const policies: Policy[] = [];
  const tierOrders = new Map<string, number>([['default', DEFAULT_TIER_ORDER]]);
  const serviceAccounts = new Map<string, Labels>();
  objects.forEach((item, index) => {
    if (!isObj(item)) return;
    const kind = typeof item.kind === 'string' ? item.kind : '';
    const md = isObj(item.metadata) ? item.metadata : {};
    const name = typeof md.name === 'string' && md.name !== '' ? md.name : null;
    const nsPart = typeof md.namespace === 'string' && md.namespace !== '' ? `${md.namespace}/` : '';
    const where = `${source}: ${kind} ${nsPart}${name ?? '(unnamed)'}`;
    if (name === null) {
      warnings.push(`${source}: policy object ${index} (${kind}) skipped, needs metadata.name`);
      return;
    }
    const policyNotes: string[] = [];
    const note = (m: string): void => {
      policyNotes.push(m);
    };
    try {
      switch (kind) {
        case 'Tier': {
          const spec = isObj(item.spec) ? item.spec : {};
          const o = spec.order;
          if (o !== undefined && o !== null && (typeof o !== 'number' || !Number.isFinite(o)))
            throw new PolicyError(`${where}.spec.order: must be a number, got ${JSON.stringify(o)}`);
          tierOrders.set(name, typeof o === 'number' ? o : Number.POSITIVE_INFINITY);
          return;
        }
        case 'ServiceAccount': {
          const labels: Record<string, string> = {};
          if (isObj(md.labels))
            for (const [k, v] of Object.entries(md.labels)) if (typeof v === 'string') labels[k] = v;
          labels['projectcalico.org/name'] = name;
          serviceAccounts.set(`${nsPart || 'default/'}${name}`, Object.freeze(labels));
          return;
        }
        case 'NetworkPolicy':
          policies.push(
            isCalicoApi(item.apiVersion)
              ? compileCalicoPolicy(item, 'NetworkPolicy', false, where, note, ctx)
              : compileKubernetesPolicy(item, false, where),
          );
          return;
        case 'StagedKubernetesNetworkPolicy':
          policies.push(compileKubernetesPolicy(item, true, where));
          return;
        case 'GlobalNetworkPolicy':
        case 'StagedNetworkPolicy':
        case 'StagedGlobalNetworkPolicy': {
          const staged = kind.startsWith('Staged');
          const k = (staged ? kind.slice(6) : kind) as CalicoKind;
          policies.push(compileCalicoPolicy(item, k, staged, where, note, ctx));
          return;
        }
        default:
          return;
      }
    } catch (err) {
      if (!(err instanceof Error) || (err.name !== 'PolicyError' && err.name !== 'SelectorParseError'))
        throw err;
      warnings.push(`${err.message}; policy skipped`);
      policyNotes.length = 0;
    } finally {
      // A policy left out has its warning, not notes about parts of it.
      if (policyNotes.length > 0) notes.push(policyNotes.join('; '));
    }
  });
  for (const p of policies) {
    if (!tierOrders.has(p.tier)) {
      warnings.push(
        `${source}: tier ${JSON.stringify(p.tier)} of ${p.traceName} has no Tier object; ordered last`,
      );
      tierOrders.set(p.tier, Number.POSITIVE_INFINITY);
    }
  }
  policies.sort(comparePolicies);
  policies.forEach((p, i) => {
    p.seq = i + 1;
  });
  const tierNames = [...new Set(policies.map((p) => p.tier))].sort((a, b) => {
    const oa = tierOrders.get(a)!;
    const ob = tierOrders.get(b)!;
    if (oa !== ob) return oa < ob ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
  const tiers: TierPolicies[] = tierNames.map((t) => {
    const global: Policy[] = [];
    const byNamespace = new Map<string, Policy[]>();
    for (const p of policies) {
      if (p.tier !== t) continue;
      if (p.namespace === null) global.push(p);
      else {
        const l = byNamespace.get(p.namespace) ?? [];
        l.push(p);
        byNamespace.set(p.namespace, l);
      }
    }
    return { tier: { name: t, order: tierOrders.get(t)! }, global, byNamespace };
  });
  let usesSourcePorts = false;
  let usesNets = false;
  let usesIcmp = false;
  const stagedIds = new Set<string>();
  let stagedCount = 0;
  for (const p of policies) {
    if (p.staged) {
      stagedIds.add(p.identity);
      stagedCount++;
    }
    for (const r of [...(p.ingress ?? []), ...(p.egress ?? [])]) {
      if (r.source.ports !== null || r.source.notPorts !== null) usesSourcePorts = true;
      if (r.icmp !== null || r.notIcmp !== null) usesIcmp = true;
      // A `services` match tests addresses too: unknown IPs are told apart in the cache.
      for (const e of [r.source, r.destination])
        if (e.nets !== null || e.notNets !== null || e.service !== null) usesNets = true;
    }
  }
  const replacedByStaged = new Set<string>();
  for (const p of policies) if (!p.staged && stagedIds.has(p.identity)) replacedByStaged.add(p.identity);
  return {
    tiers,
    policyCount: policies.length,
    stagedCount,
    usesSourcePorts,
    usesNets,
    usesIcmp,
    serviceAccounts,
    replacedByStaged,
    warnings,
    notes,
  };
}
