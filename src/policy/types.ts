// The compiled policy model both Kubernetes and Calico policies are turned into (as Felix
// turns Kubernetes NetworkPolicies into Calico rules), and the endpoint and flow shapes
// the evaluator tests them against.

import type { Labels, Matcher } from './selector.ts';
import type { Net, PolicyIp, PortSpec } from './values.ts';

export type PolicyKind = 'knp' | 'cnp' | 'gnp';
export type Direction = 'ingress' | 'egress';
export type RuleAction = 'allow' | 'deny' | 'pass' | 'log';

export interface NamedPort {
  readonly name: string;
  readonly port: number;
  /** IP protocol number. */
  readonly proto: number;
}

/** One side of a flow as policies see it. */
export interface PolicyPeer {
  /** Stable while the metadata does not change; part of the trace cache key (per endpoint and, when rules test nets, per IP). */
  readonly id: number;
  /** Per endpoint: the key of its policy selection. */
  readonly epId: number;
  /** `__PROFILE__.kns.<ns>`: the profile hit's name when no tier decides. */
  readonly profile: string;
  readonly kind: 'wep' | 'hep' | 'ns' | 'net';
  /** null for non-namespaced endpoints (hosts, global network sets) and unknown IPs. */
  readonly namespace: string | null;
  /** The endpoint's labels plus the ones Calico adds (projectcalico.org/namespace, /orchestrator, /serviceaccount). */
  readonly labels: Labels;
  /** The namespace's labels plus projectcalico.org/name; GLOBAL_NAMESPACE when not namespaced. */
  readonly nsLabels: Labels;
  readonly serviceAccount: string | null;
  /** The service account's labels plus projectcalico.org/name; null when not a pod. */
  readonly saLabels: Labels | null;
  /** Container port names of a pod. */
  readonly namedPorts: readonly NamedPort[];
}

export interface Flow {
  readonly direction: Direction;
  readonly src: PolicyPeer;
  readonly dst: PolicyPeer;
  readonly srcIp: PolicyIp;
  readonly dstIp: PolicyIp;
  readonly proto: number;
  readonly srcPort: number;
  readonly dstPort: number;
  /** The addresses as canonical text (`services` matches look them up). */
  readonly srcAddr: string;
  readonly dstAddr: string;
  /**
   * ICMP/ICMPv6: type << 8 | code of the message that opened the connection (an echo
   * request for a ping; the datapath records the first packet's), -1 when unknown.
   */
  readonly icmp: number;
}

/** Calico ICMPFields: `type` and, optionally, `code` (null: any code). */
export interface IcmpMatch {
  readonly type: number;
  readonly code: number | null;
}

/** A Calico EntityRule (`source` / `destination`). Absent parts are null: they match anything. */
export interface EntityMatch {
  readonly nets: readonly Net[] | null;
  readonly notNets: readonly Net[] | null;
  /** Selector, namespaceSelector, namespace scoping, notSelector and serviceAccounts in one test. */
  readonly peer: ((p: PolicyPeer) => boolean) | null;
  readonly ports: readonly PortSpec[] | null;
  readonly notPorts: readonly PortSpec[] | null;
  /** `services`: whether the address (canonical text), port and protocol are the named Service's. */
  readonly service: ((addr: string, port: number, proto: number) => boolean) | null;
}

/** A Service as rules' `services` match it, from its EndpointSlices (and the Service). */
export interface ServiceEndpoints {
  /** Endpoint addresses, canonical text: what a `source.services` match tests. */
  readonly ips: ReadonlySet<string>;
  /**
   * `<address>|<protocol number>|<port>` of every endpoint and port of its slices, and of
   * every cluster IP and Service port while it has an endpoint (a connection to the
   * cluster IP is DNAT'd to one of them before Calico's policy sees it): what a
   * `destination.services` match tests.
   */
  readonly ipPorts: ReadonlySet<string>;
}

export interface Rule {
  readonly action: RuleAction;
  readonly protocol: number | null;
  readonly notProtocol: number | null;
  readonly ipVersion: 4 | 6 | null;
  readonly icmp: IcmpMatch | null;
  readonly notIcmp: IcmpMatch | null;
  /**
   * The rule has an HTTP match. A flow is an L3/L4 connection: only the rule's L3/L4 part
   * is evaluated (what Calico's kernel dataplane enforces); the per-request HTTP decision
   * belongs to Calico's application layer and is not in flow records.
   */
  readonly http: boolean;
  readonly source: EntityMatch;
  readonly destination: EntityMatch;
}

export interface Policy {
  readonly kind: PolicyKind;
  readonly staged: boolean;
  readonly tier: string;
  /** Calico `order`; Infinity when unset (evaluated after every ordered policy). */
  readonly order: number;
  /** The name part of a trace hit, e.g. `web/knp.default.allow-x`, `staged:security.pass`. */
  readonly traceName: string;
  /** Position in the model's evaluation order, set when the model is built (trace interning key). */
  seq: number;
  /** Identity shared by a staged policy and the enforced one it would replace. */
  readonly identity: string;
  readonly namespace: string | null;
  /** Whether the policy applies to (selects) an endpoint. */
  readonly selects: (ep: PolicyPeer) => boolean;
  /** null when the policy does not apply to that direction (policyTypes / types). */
  readonly ingress: readonly Rule[] | null;
  readonly egress: readonly Rule[] | null;
}

export interface TierSpec {
  readonly name: string;
  readonly order: number;
}

export type { Labels, Matcher };
