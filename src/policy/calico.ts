// Calico projectcalico.org/v3 (also served as crd.projectcalico.org/v1) NetworkPolicy,
// GlobalNetworkPolicy and their Staged* forms, compiled into the shared model.
//
// Scoping as Calico's: a namespaced policy selects pods of its own namespace, and a rule
// `selector` in it matches endpoints of that namespace unless a `namespaceSelector` is
// given; in a global policy a selector matches endpoints anywhere. A selector never
// matches an unknown IP (`net`). `types` defaults as Calico's: Ingress, or Egress alone
// when there are egress rules and no ingress rules, or both when both exist.

import { compileSelector, type Matcher } from './selector.ts';
import type {
  Direction,
  EntityMatch,
  IcmpMatch,
  Policy,
  PolicyKind,
  PolicyPeer,
  Rule,
  RuleAction,
  ServiceEndpoints,
} from './types.ts';
import {
  isObj,
  listOf,
  type Net,
  type Obj,
  PORT_PROTOCOLS,
  PolicyError,
  type PortSpec,
  parseCalicoPort,
  parseNet,
  parseProtocol,
} from './values.ts';

function optSelector(v: unknown, where: string): Matcher | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string')
    throw new PolicyError(`${where}: must be a selector string, got ${JSON.stringify(v)}`);
  return compileSelector(v, where);
}

function nets(v: unknown, where: string): Net[] | null {
  const l = listOf(v, where);
  return l.length === 0 ? null : l.map((n, i) => parseNet(n, `${where}[${i}]`));
}

function ports(v: unknown, where: string): PortSpec[] | null {
  const l = listOf(v, where);
  return l.length === 0 ? null : l.map((p, i) => parseCalicoPort(p, `${where}[${i}]`));
}

const ACTIONS: Readonly<Record<string, RuleAction>> = {
  Allow: 'allow',
  Deny: 'deny',
  Pass: 'pass',
  Log: 'log',
};

/** What compiling a policy needs besides the policy: the Services its rules may name. */
export interface CompileContext {
  /** By `<namespace>/<name>`. */
  readonly services: ReadonlyMap<string, ServiceEndpoints>;
}

const NO_SERVICE: ServiceEndpoints = { ips: new Set(), ipPorts: new Set() };

/**
 * A rule's `services` (Calico's ServiceMatch): the named Service's endpoints, as Felix's
 * service index makes them from EndpointSlices. In a destination (egress rules only) an
 * endpoint's address with one of its ports and protocols, or the Service's cluster IP and
 * port (DNAT'd to such an endpoint before Calico's policy sees it); in a source (ingress
 * rules only) an endpoint's address. A Service without endpoints matches nothing.
 */
function compileService(
  v: Obj,
  side: 'source' | 'destination',
  dir: Direction,
  policyNs: string | null,
  where: string,
  ctx: CompileContext,
): ((addr: string, port: number, proto: number) => boolean) | null {
  const s = v.services;
  if (s === undefined || s === null) return null;
  const at = `${where}.services`;
  if (!isObj(s)) throw new PolicyError(`${at}: must be an object, got ${JSON.stringify(s)}`);
  if (side === 'source' && dir === 'egress')
    throw new PolicyError(`${at}: not allowed in an egress rule's source`);
  if (side === 'destination' && dir === 'ingress')
    throw new PolicyError(`${at}: not allowed in an ingress rule's destination`);
  if (typeof s.name !== 'string' || s.name === '')
    throw new PolicyError(`${at}.name: must specify a service name, got ${JSON.stringify(s.name)}`);
  let ns = policyNs;
  if (s.namespace !== undefined && s.namespace !== null && s.namespace !== '') {
    if (typeof s.namespace !== 'string')
      throw new PolicyError(`${at}.namespace: must be a string, got ${JSON.stringify(s.namespace)}`);
    ns = s.namespace;
  }
  if (ns === null) throw new PolicyError(`${at}.namespace: a GlobalNetworkPolicy must specify a namespace`);
  for (const [f, what] of [
    ['selector', 'Selector/NotSelector'],
    ['notSelector', 'Selector/NotSelector'],
    ['namespaceSelector', 'NamespaceSelector'],
    ['serviceAccounts', 'ServiceAccounts'],
    ['nets', 'Nets/NotNets'],
    ['notNets', 'Nets/NotNets'],
  ] as const)
    if (v[f] !== undefined && v[f] !== null && v[f] !== '' && !(Array.isArray(v[f]) && v[f].length === 0))
      throw new PolicyError(`${at}: cannot specify ${what} and Services on the same rule`);
  if (side === 'destination')
    for (const f of ['ports', 'notPorts'] as const)
      if (Array.isArray(v[f]) && v[f].length > 0)
        throw new PolicyError(
          `${where}.${f}: cannot specify ${f} with a service (its endpoints' ports are used)`,
        );
  const svc = ctx.services.get(`${ns}/${s.name}`) ?? NO_SERVICE;
  return side === 'source'
    ? (addr) => svc.ips.has(addr)
    : (addr, port, proto) => svc.ipPorts.has(`${addr}|${proto}|${port}`);
}

function compileEntity(
  v: unknown,
  side: 'source' | 'destination',
  dir: Direction,
  policyNs: string | null,
  where: string,
  ctx: CompileContext,
): EntityMatch {
  if (v === undefined || v === null)
    return { nets: null, notNets: null, peer: null, ports: null, notPorts: null, service: null };
  if (!isObj(v)) throw new PolicyError(`${where}: must be an object, got ${JSON.stringify(v)}`);
  const service = compileService(v, side, dir, policyNs, where, ctx);
  const sel = optSelector(v.selector, `${where}.selector`);
  const notSel = optSelector(v.notSelector, `${where}.notSelector`);
  const nsSel = optSelector(v.namespaceSelector, `${where}.namespaceSelector`);
  let sa: ((p: PolicyPeer) => boolean) | null = null;
  if (v.serviceAccounts !== undefined && v.serviceAccounts !== null) {
    const s = v.serviceAccounts;
    if (!isObj(s))
      throw new PolicyError(`${where}.serviceAccounts: must be an object, got ${JSON.stringify(s)}`);
    const names = listOf(s.names, `${where}.serviceAccounts.names`);
    if (names.some((n) => typeof n !== 'string'))
      throw new PolicyError(
        `${where}.serviceAccounts.names: must be strings, got ${JSON.stringify(s.names)}`,
      );
    const nameSet = new Set(names as string[]);
    const saSel = optSelector(s.selector, `${where}.serviceAccounts.selector`);
    sa = (p) =>
      p.kind === 'wep' &&
      p.serviceAccount !== null &&
      (policyNs === null || nsSel !== null || p.namespace === policyNs) &&
      (nameSet.size === 0 || nameSet.has(p.serviceAccount)) &&
      (saSel === null || saSel(p.saLabels ?? {}));
  }
  // A namespaced policy scopes its selectors to its namespace unless namespaceSelector says otherwise.
  const inScope = (p: PolicyPeer): boolean =>
    p.kind !== 'net' && (nsSel !== null ? nsSel(p.nsLabels) : policyNs === null || p.namespace === policyNs);
  let peer: ((p: PolicyPeer) => boolean) | null = null;
  if (sel !== null || nsSel !== null || notSel !== null || sa !== null) {
    const positive = sel !== null || nsSel !== null;
    peer = (p) => {
      if (positive && !(inScope(p) && (sel === null || sel(p.labels)))) return false;
      if (notSel !== null && inScope(p) && notSel(p.labels)) return false;
      return sa === null || sa(p);
    };
  }
  return {
    nets: nets(v.nets, `${where}.nets`),
    notNets: nets(v.notNets, `${where}.notNets`),
    peer,
    ports: ports(v.ports, `${where}.ports`),
    notPorts: ports(v.notPorts, `${where}.notPorts`),
    service,
  };
}

function compileRule(
  v: unknown,
  dir: Direction,
  policyNs: string | null,
  where: string,
  note: (m: string) => void,
  ctx: CompileContext,
): Rule {
  if (!isObj(v)) throw new PolicyError(`${where}: must be an object, got ${JSON.stringify(v)}`);
  const action = typeof v.action === 'string' ? ACTIONS[v.action] : undefined;
  if (action === undefined)
    throw new PolicyError(
      `${where}.action: must be Allow, Deny, Pass or Log, got ${JSON.stringify(v.action)}`,
    );
  const protocol =
    v.protocol === undefined || v.protocol === null ? null : parseProtocol(v.protocol, `${where}.protocol`);
  const notProtocol =
    v.notProtocol === undefined || v.notProtocol === null
      ? null
      : parseProtocol(v.notProtocol, `${where}.notProtocol`);
  let ipVersion: 4 | 6 | null = null;
  if (v.ipVersion !== undefined && v.ipVersion !== null) {
    if (v.ipVersion !== 4 && v.ipVersion !== 6)
      throw new PolicyError(`${where}.ipVersion: must be 4 or 6, got ${JSON.stringify(v.ipVersion)}`);
    ipVersion = v.ipVersion;
  }
  const icmp = icmpFields(v.icmp, `${where}.icmp`);
  const notIcmp = icmpFields(v.notICMP, `${where}.notICMP`);
  if (icmp !== null && (protocol === null || !ICMP_PROTOCOLS.has(protocol)))
    throw new PolicyError(`${where}.icmp: needs protocol ICMP or ICMPv6, got ${JSON.stringify(v.protocol)}`);
  let http = false;
  if (v.http !== undefined && v.http !== null) {
    if (!isObj(v.http))
      throw new PolicyError(`${where}.http: must be an object, got ${JSON.stringify(v.http)}`);
    if (action !== 'allow')
      throw new PolicyError(`${where}.http: only valid for Allow rules, got ${v.action}`);
    if (protocol !== null && protocol !== 6)
      throw new PolicyError(`${where}.http: needs protocol TCP or none, got ${JSON.stringify(v.protocol)}`);
    http = true;
    note(
      `${where}.http: HTTP matches are not evaluated (a flow is an L3/L4 connection): the rule is decided on its L3/L4 part, as Calico's kernel dataplane enforces it; requests its application layer would refuse are not in flow records`,
    );
  }
  const source = compileEntity(v.source, 'source', dir, policyNs, `${where}.source`, ctx);
  const destination = compileEntity(v.destination, 'destination', dir, policyNs, `${where}.destination`, ctx);
  const usesPorts = source.ports ?? source.notPorts ?? destination.ports ?? destination.notPorts;
  if (usesPorts !== null && (protocol === null || !PORT_PROTOCOLS.has(protocol)))
    throw new PolicyError(
      `${where}: ports need protocol TCP, UDP, SCTP or UDPLite, got ${JSON.stringify(v.protocol)}`,
    );
  return { action, protocol, notProtocol, ipVersion, icmp, notIcmp, http, source, destination };
}

const ICMP_PROTOCOLS: ReadonlySet<number> = new Set([1, 58]);

function icmpNumber(v: unknown, max: number, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw new PolicyError(`${where}: must be an integer 0-${max}, got ${JSON.stringify(v)}`);
  return v;
}

/** Calico ICMPFields: type 0-254 (255 is the kernel's "any") and an optional code 0-255 that needs a type. */
function icmpFields(v: unknown, where: string): IcmpMatch | null {
  if (v === undefined || v === null) return null;
  if (!isObj(v)) throw new PolicyError(`${where}: must be an object, got ${JSON.stringify(v)}`);
  const hasType = v.type !== undefined && v.type !== null;
  const hasCode = v.code !== undefined && v.code !== null;
  if (!hasType) {
    if (hasCode) throw new PolicyError(`${where}.code: ICMP code specified without an ICMP type`);
    return null;
  }
  return {
    type: icmpNumber(v.type, 254, `${where}.type`),
    code: hasCode ? icmpNumber(v.code, 255, `${where}.code`) : null,
  };
}

export type CalicoKind = 'NetworkPolicy' | 'GlobalNetworkPolicy';

/** Compiles a Calico (Staged)(Global)NetworkPolicy. Throws PolicyError naming the field. */
export function compileCalicoPolicy(
  item: Obj,
  kind: CalicoKind,
  staged: boolean,
  where: string,
  note: (m: string) => void,
  ctx: CompileContext,
): Policy {
  const md = isObj(item.metadata) ? item.metadata : {};
  const global = kind === 'GlobalNetworkPolicy';
  const ns = global
    ? null
    : typeof md.namespace === 'string' && md.namespace !== ''
      ? md.namespace
      : 'default';
  const spec = isObj(item.spec) ? item.spec : {};
  if (staged && spec.stagedAction !== undefined && spec.stagedAction !== 'Set')
    throw new PolicyError(
      `${where}.spec.stagedAction: only Set is evaluated, got ${JSON.stringify(spec.stagedAction)}`,
    );
  const tier = spec.tier === undefined || spec.tier === null || spec.tier === '' ? 'default' : spec.tier;
  if (typeof tier !== 'string')
    throw new PolicyError(`${where}.spec.tier: must be a string, got ${JSON.stringify(tier)}`);
  let order = Number.POSITIVE_INFINITY;
  if (spec.order !== undefined && spec.order !== null) {
    if (typeof spec.order !== 'number' || !Number.isFinite(spec.order))
      throw new PolicyError(`${where}.spec.order: must be a number, got ${JSON.stringify(spec.order)}`);
    order = spec.order;
  }
  // Names stored as "<tier>.<name>" (the older convention, and the CRD form) are not doubled.
  let name = md.name as string;
  if (name.startsWith(`${tier}.`)) name = name.slice(tier.length + 1);
  const sel = optSelector(spec.selector, `${where}.spec.selector`);
  const saSel = optSelector(spec.serviceAccountSelector, `${where}.spec.serviceAccountSelector`);
  const nsSel = global ? optSelector(spec.namespaceSelector, `${where}.spec.namespaceSelector`) : null;
  if (!global && spec.namespaceSelector !== undefined)
    throw new PolicyError(`${where}.spec.namespaceSelector: only a GlobalNetworkPolicy has one`);
  const ingressList = listOf(spec.ingress, `${where}.spec.ingress`);
  const egressList = listOf(spec.egress, `${where}.spec.egress`);
  let hasIngress = false;
  let hasEgress = false;
  const types = listOf(spec.types, `${where}.spec.types`);
  for (const t of types) {
    if (t === 'Ingress') hasIngress = true;
    else if (t === 'Egress') hasEgress = true;
    else throw new PolicyError(`${where}.spec.types: must be Ingress or Egress, got ${JSON.stringify(t)}`);
  }
  if (types.length === 0) {
    hasEgress = egressList.length > 0;
    hasIngress = ingressList.length > 0 || !hasEgress;
  }
  const flag = (f: 'preDNAT' | 'doNotTrack' | 'applyOnForward'): boolean => {
    const b = spec[f];
    if (b === undefined || b === null) return false;
    if (typeof b !== 'boolean')
      throw new PolicyError(`${where}.spec.${f}: must be true or false, got ${JSON.stringify(b)}`);
    if (b && !global) throw new PolicyError(`${where}.spec.${f}: only a GlobalNetworkPolicy has one`);
    return b;
  };
  const preDNAT = flag('preDNAT');
  const doNotTrack = flag('doNotTrack');
  const applyOnForward = flag('applyOnForward');
  if (preDNAT && doNotTrack)
    throw new PolicyError(`${where}.spec.preDNAT: preDNAT and doNotTrack cannot both be true`);
  // Felix applies pre-DNAT and untracked policies at host endpoints only, never to a
  // workload's own traffic: leaving them out of pod traces is exact, and what they do
  // at host interfaces is not evaluated (this stage traces pods only).
  const hostOnly = preDNAT || doNotTrack;
  if (hostOnly)
    note(
      `${where}: a ${preDNAT ? 'preDNAT' : 'doNotTrack'} policy applies at host endpoints only: it is in no pod's trace, and host endpoint traffic is not evaluated (its records have empty policies)`,
    );
  else if (applyOnForward)
    note(
      `${where}.spec.applyOnForward: forwarded traffic through host endpoints is not evaluated; for pods the policy is evaluated as usual (applyOnForward does not change it)`,
    );
  const selects = (ep: PolicyPeer): boolean =>
    !hostOnly &&
    ep.kind === 'wep' &&
    (ns === null || ep.namespace === ns) &&
    (sel === null || sel(ep.labels)) &&
    (nsSel === null || nsSel(ep.nsLabels)) &&
    (saSel === null || (ep.saLabels !== null && saSel(ep.saLabels)));
  const rules = (list: unknown[], field: 'ingress' | 'egress'): Rule[] =>
    list.map((r, i) => compileRule(r, field, ns, `${where}.spec.${field}[${i}]`, note, ctx));
  const prefix = staged ? 'staged:' : '';
  const kindTag: PolicyKind = global ? 'gnp' : 'cnp';
  return {
    kind: kindTag,
    staged,
    tier,
    order,
    traceName: ns === null ? `${prefix}${tier}.${name}` : `${ns}/${prefix}${tier}.${name}`,
    seq: 0,
    identity: `${kindTag}|${ns ?? ''}|${tier}|${name}`,
    namespace: ns,
    selects: (ep) => selects(ep),
    ingress: hasIngress ? rules(ingressList, 'ingress') : null,
    egress: hasEgress ? rules(egressList, 'egress') : null,
  };
}
