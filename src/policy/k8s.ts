// Kubernetes networking.k8s.io/v1 NetworkPolicy (and Calico's StagedKubernetesNetworkPolicy)
// turned into the Calico rules Felix would program for it, so that rule indexes in traces
// are the ones Calico writes: each ingress/egress entry becomes one rule per protocol of
// its ports (sorted by name: SCTP, TCP, UDP) times one rule per peer, in that order; no
// ports means one rule for every protocol, no peers one rule for every peer.
//
// Empty and absent differ: `ingress: []` (with policyTypes Ingress) denies all ingress,
// `ingress: [{}]` allows all of it; `from`/`to`/`ports` absent or [] mean "any";
// `podSelector: {}` selects every pod of the namespace; a peer's `namespaceSelector: {}`
// means every namespace.

import { compileLabelSelector } from './label-selector.ts';
import { MATCH_ALL } from './selector.ts';
import type { EntityMatch, Policy, PolicyPeer, Rule } from './types.ts';
import {
  isObj,
  listOf,
  type Net,
  type Obj,
  PolicyError,
  type PortSpec,
  parseK8sPort,
  parseNet,
  parseProtocol,
} from './values.ts';

const ANY: EntityMatch = Object.freeze({
  nets: null,
  notNets: null,
  peer: null,
  ports: null,
  notPorts: null,
  service: null,
});

interface PeerMatch {
  readonly peer: ((p: PolicyPeer) => boolean) | null;
  readonly nets: readonly Net[] | null;
  readonly notNets: readonly Net[] | null;
}

function compilePeer(v: unknown, ns: string, where: string): PeerMatch {
  if (!isObj(v)) throw new PolicyError(`${where}: must be an object, got ${JSON.stringify(v)}`);
  const hasPod = v.podSelector !== undefined && v.podSelector !== null;
  const hasNs = v.namespaceSelector !== undefined && v.namespaceSelector !== null;
  const hasIp = v.ipBlock !== undefined && v.ipBlock !== null;
  if (hasIp) {
    if (hasPod || hasNs) throw new PolicyError(`${where}: ipBlock cannot be combined with selectors`);
    const b = v.ipBlock;
    if (!isObj(b)) throw new PolicyError(`${where}.ipBlock: must be an object, got ${JSON.stringify(b)}`);
    const cidr = parseNet(b.cidr, `${where}.ipBlock.cidr`);
    const except = listOf(b.except, `${where}.ipBlock.except`).map((e, i) =>
      parseNet(e, `${where}.ipBlock.except[${i}]`),
    );
    return { peer: null, nets: [cidr], notNets: except.length > 0 ? except : null };
  }
  if (!hasPod && !hasNs)
    throw new PolicyError(
      `${where}: needs podSelector, namespaceSelector or ipBlock, got ${JSON.stringify(v)}`,
    );
  const pod = hasPod ? compileLabelSelector(v.podSelector, `${where}.podSelector`) : MATCH_ALL;
  if (!hasNs)
    return {
      peer: (p) => p.kind === 'wep' && p.namespace === ns && pod(p.labels),
      nets: null,
      notNets: null,
    };
  const nsSel = compileLabelSelector(v.namespaceSelector, `${where}.namespaceSelector`);
  return {
    peer: (p) => p.kind === 'wep' && p.namespace !== null && nsSel(p.nsLabels) && pod(p.labels),
    nets: null,
    notNets: null,
  };
}

function compileEntries(entries: unknown[], ns: string, ingress: boolean, where: string): Rule[] {
  const rules: Rule[] = [];
  entries.forEach((e, i) => {
    const w = `${where}[${i}]`;
    if (!isObj(e)) throw new PolicyError(`${w}: must be an object, got ${JSON.stringify(e)}`);
    const peersField = ingress ? 'from' : 'to';
    const peerList = listOf(e[peersField], `${w}.${peersField}`);
    const peers: (PeerMatch | null)[] =
      peerList.length === 0 ? [null] : peerList.map((p, j) => compilePeer(p, ns, `${w}.${peersField}[${j}]`));
    // Protocol → its ports (null: every port), as Calico groups them.
    const groups = new Map<string, { proto: number | null; ports: PortSpec[] | null }>();
    const portList = listOf(e.ports, `${w}.ports`);
    if (portList.length === 0) groups.set('', { proto: null, ports: null });
    portList.forEach((p, j) => {
      const pw = `${w}.ports[${j}]`;
      if (!isObj(p)) throw new PolicyError(`${pw}: must be an object, got ${JSON.stringify(p)}`);
      const protoName = p.protocol === undefined || p.protocol === null ? 'TCP' : p.protocol;
      if (protoName !== 'TCP' && protoName !== 'UDP' && protoName !== 'SCTP')
        throw new PolicyError(`${pw}.protocol: must be TCP, UDP or SCTP, got ${JSON.stringify(p.protocol)}`);
      const proto = parseProtocol(protoName, `${pw}.protocol`);
      const g = groups.get(protoName) ?? { proto, ports: [] };
      groups.set(protoName, g);
      if (p.port === undefined || p.port === null) {
        if (p.endPort !== undefined && p.endPort !== null)
          throw new PolicyError(`${pw}.endPort: needs a port, got ${JSON.stringify(p.endPort)}`);
        g.ports = null;
      } else if (g.ports !== null) {
        g.ports.push(parseK8sPort(p.port, p.endPort, pw));
      }
    });
    for (const key of [...groups.keys()].sort()) {
      const g = groups.get(key)!;
      for (const peer of peers) {
        const remote: EntityMatch =
          peer === null ? ANY : { ...ANY, nets: peer.nets, notNets: peer.notNets, peer: peer.peer };
        const ports: EntityMatch = g.ports === null ? ANY : { ...ANY, ports: g.ports };
        rules.push({
          action: 'allow',
          protocol: g.proto,
          notProtocol: null,
          ipVersion: null,
          icmp: null,
          notIcmp: null,
          http: false,
          source: ingress ? remote : ANY,
          destination: ingress ? ports : { ...remote, ports: g.ports },
        });
      }
    }
  });
  return rules;
}

/** Compiles a NetworkPolicy (`staged` for StagedKubernetesNetworkPolicy). Throws PolicyError naming the field. */
export function compileKubernetesPolicy(item: Obj, staged: boolean, where: string): Policy {
  const md = isObj(item.metadata) ? item.metadata : {};
  const name = md.name as string;
  const ns = typeof md.namespace === 'string' && md.namespace !== '' ? md.namespace : 'default';
  const spec = item.spec;
  if (!isObj(spec)) throw new PolicyError(`${where}.spec: missing`);
  if (staged && spec.stagedAction !== undefined && spec.stagedAction !== 'Set')
    throw new PolicyError(
      `${where}.spec.stagedAction: only Set is evaluated, got ${JSON.stringify(spec.stagedAction)}`,
    );
  if (spec.podSelector === undefined)
    throw new PolicyError(`${where}.spec.podSelector: required ({} selects every pod)`);
  const podSel = compileLabelSelector(spec.podSelector, `${where}.spec.podSelector`);
  const ingressList = listOf(spec.ingress, `${where}.spec.ingress`);
  const egressList = listOf(spec.egress, `${where}.spec.egress`);
  let hasIngress = false;
  let hasEgress = false;
  const types = listOf(spec.policyTypes, `${where}.spec.policyTypes`);
  for (const t of types) {
    if (t === 'Ingress') hasIngress = true;
    else if (t === 'Egress') hasEgress = true;
    else
      throw new PolicyError(`${where}.spec.policyTypes: must be Ingress or Egress, got ${JSON.stringify(t)}`);
  }
  if (types.length === 0) {
    // Implied: always Ingress, Egress when there are egress rules.
    hasIngress = true;
    hasEgress = egressList.length > 0;
  }
  const prefix = staged ? 'staged:' : '';
  return {
    kind: 'knp',
    staged,
    tier: 'default',
    order: 1000,
    traceName: `${ns}/${prefix}knp.default.${name}`,
    seq: 0,
    identity: `knp|${ns}|${name}`,
    namespace: ns,
    selects: (ep) => ep.kind === 'wep' && ep.namespace === ns && podSel(ep.labels),
    ingress: hasIngress ? compileEntries(ingressList, ns, true, `${where}.spec.ingress`) : null,
    egress: hasEgress ? compileEntries(egressList, ns, false, `${where}.spec.egress`) : null,
  };
}
