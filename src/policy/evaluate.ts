// Calico's evaluation order over the compiled model, for one endpoint and direction:
// tiers in order, and in each tier the policies that select the endpoint, in order; a
// policy's first matching rule decides (Log rules are noted by the dataplane and skipped
// here); Pass goes on to the next tier; a tier in which some policy selects the endpoint
// but no rule matched ends in a deny attributed to that tier's last selecting policy
// (rule index -1); when no tier decided, the namespace profile `kns.<ns>` allows.
//
// Three traces come out of one selection (SPEC §7):
// - enforced: enforced policies only, up to the verdict;
// - pending: staged and enforced, every verdict counts (an enforced policy a staged one of
//   the same name would replace is skipped): what the flow would get with the staged
//   policies enforced;
// - all: staged and enforced, staged hits recorded without deciding, up to the enforced
//   verdict.

import { comparePolicies, type PolicyModel } from './model.ts';
import type { Direction, EntityMatch, Flow, IcmpMatch, Policy, PolicyPeer, Rule } from './types.ts';
import { anyNetContains, type PolicyIp, type PortSpec } from './values.ts';

export type HitAction = 'allow' | 'deny' | 'pass';

export interface Hit {
  /** The policy's seq (0 for the profile). */
  readonly seq: number;
  readonly tier: string;
  readonly name: string;
  readonly action: HitAction;
  /** Matching rule index from 0; -1 for a tier's end-of-tier deny. */
  readonly rule: number;
  /** The matching rule has an HTTP match (decided on its L3/L4 part only). */
  readonly http?: boolean;
}

export interface TierSelection {
  readonly tier: string;
  /** The tier's policies that select the endpoint in this direction, in evaluation order. */
  readonly policies: readonly Policy[];
}

export interface Selection {
  readonly tiers: readonly TierSelection[];
  /** Whether any selecting policy is staged (else the three traces are the same). */
  readonly staged: boolean;
}

function mergeSorted(a: readonly Policy[], b: readonly Policy[]): Policy[] {
  const out: Policy[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) out.push(comparePolicies(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!);
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

const NO_POLICIES: readonly Policy[] = [];

/** The policies that apply to `ep` for `dir`, tier by tier (tiers without any left out). */
export function selectPolicies(model: PolicyModel, ep: PolicyPeer, dir: Direction): Selection {
  const tiers: TierSelection[] = [];
  let staged = false;
  if (ep.kind !== 'wep') return { tiers, staged };
  for (const t of model.tiers) {
    const local = (ep.namespace !== null ? t.byNamespace.get(ep.namespace) : undefined) ?? NO_POLICIES;
    const candidates =
      local.length === 0 ? t.global : t.global.length === 0 ? local : mergeSorted(t.global, local);
    let picked: Policy[] | null = null;
    for (const p of candidates) {
      if ((dir === 'ingress' ? p.ingress : p.egress) === null || !p.selects(ep)) continue;
      if (picked === null) picked = [];
      picked.push(p);
      if (p.staged) staged = true;
    }
    if (picked !== null) tiers.push({ tier: t.tier.name, policies: picked });
  }
  return { tiers, staged };
}

function portIn(specs: readonly PortSpec[], port: number, proto: number, owner: PolicyPeer): boolean {
  for (const s of specs) {
    if ('min' in s) {
      if (port >= s.min && port <= s.max) return true;
    } else {
      for (const n of owner.namedPorts)
        if (n.name === s.name && n.proto === proto && n.port === port) return true;
    }
  }
  return false;
}

function entityMatches(
  e: EntityMatch,
  peer: PolicyPeer,
  ip: PolicyIp,
  addr: string,
  port: number,
  proto: number,
): boolean {
  if (e.service !== null && !e.service(addr, port, proto)) return false;
  if (e.ports !== null && !portIn(e.ports, port, proto, peer)) return false;
  if (e.notPorts !== null && portIn(e.notPorts, port, proto, peer)) return false;
  if (e.nets !== null && !anyNetContains(e.nets, ip)) return false;
  if (e.notNets !== null && anyNetContains(e.notNets, ip)) return false;
  return e.peer === null || e.peer(peer);
}

/** Whether the flow's ICMP message is `m` (an unknown message is none). */
function icmpIs(m: IcmpMatch, f: Flow): boolean {
  return f.icmp >= 0 && f.icmp >> 8 === m.type && (m.code === null || (f.icmp & 0xff) === m.code);
}

function isIcmpProto(proto: number): boolean {
  return proto === 1 || proto === 58;
}

export function ruleMatches(r: Rule, f: Flow): boolean {
  if (r.protocol !== null && r.protocol !== f.proto) return false;
  if (r.notProtocol !== null && r.notProtocol === f.proto) return false;
  if (r.ipVersion !== null && r.ipVersion !== f.dstIp.family) return false;
  // The kernel's ICMP matches (iptables' icmp/icmp6, nft's icmp type) test ICMP packets
  // only: a notICMP rule matches ICMP messages other than the one named, never TCP or UDP.
  if (r.icmp !== null && !(isIcmpProto(f.proto) && icmpIs(r.icmp, f))) return false;
  if (r.notIcmp !== null && !(isIcmpProto(f.proto) && f.icmp >= 0 && !icmpIs(r.notIcmp, f))) return false;
  return (
    entityMatches(r.destination, f.dst, f.dstIp, f.dstAddr, f.dstPort, f.proto) &&
    entityMatches(r.source, f.src, f.srcIp, f.srcAddr, f.srcPort, f.proto)
  );
}

/** The index of the policy's first matching Allow/Deny/Pass rule for the flow, or -1. */
export function firstMatch(p: Policy, f: Flow): number {
  const rules = f.direction === 'ingress' ? p.ingress : p.egress;
  if (rules === null) return -1;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.action !== 'log' && ruleMatches(r, f)) return i;
  }
  return -1;
}

export type TraceMode = 'enforced' | 'pending' | 'all';

function ruleOf(p: Policy, f: Flow, i: number): Rule {
  return (f.direction === 'ingress' ? p.ingress : p.egress)![i]!;
}

/**
 * The hits for one mode. `matches` caches firstMatch per policy across the three modes
 * (same flow, same selection).
 */
export function traceFor(
  sel: Selection,
  f: Flow,
  mode: TraceMode,
  replaced: ReadonlySet<string>,
  matches: Map<Policy, number> | null,
): Hit[] {
  const hits: Hit[] = [];
  const local = f.direction === 'ingress' ? f.dst : f.src;
  const match = (p: Policy): number => {
    if (matches === null) return firstMatch(p, f);
    let m = matches.get(p);
    if (m === undefined) {
      m = firstMatch(p, f);
      matches.set(p, m);
    }
    return m;
  };
  for (const t of sel.tiers) {
    let lastEnforced: Policy | null = null;
    let lastStaged: Policy | null = null;
    let lastAny: Policy | null = null;
    let stagedHit = false;
    let decided: HitAction | null = null;
    for (const p of t.policies) {
      if (p.staged) {
        if (mode === 'enforced') continue;
      } else if (mode === 'pending' && replaced.has(p.identity)) continue;
      lastAny = p;
      if (p.staged) lastStaged = p;
      else lastEnforced = p;
      const m = match(p);
      if (m < 0) continue;
      const r = ruleOf(p, f, m);
      const action = r.action as HitAction;
      hits.push(
        r.http
          ? { seq: p.seq, tier: t.tier, name: p.traceName, action, rule: m, http: true }
          : { seq: p.seq, tier: t.tier, name: p.traceName, action, rule: m },
      );
      if (mode === 'all' && p.staged) {
        stagedHit = true;
        continue;
      }
      decided = action;
      break;
    }
    if (decided === 'pass') continue;
    if (decided !== null) return hits;
    // No verdict in this tier.
    if (mode === 'all') {
      if (lastEnforced !== null) {
        hits.push({
          seq: lastEnforced.seq,
          tier: t.tier,
          name: lastEnforced.traceName,
          action: 'deny',
          rule: -1,
        });
        return hits;
      }
      if (lastStaged !== null && !stagedHit)
        hits.push({
          seq: lastStaged.seq,
          tier: t.tier,
          name: lastStaged.traceName,
          action: 'deny',
          rule: -1,
        });
      continue;
    }
    if (lastAny !== null) {
      hits.push({ seq: lastAny.seq, tier: t.tier, name: lastAny.traceName, action: 'deny', rule: -1 });
      return hits;
    }
  }
  hits.push({
    seq: 0,
    tier: '__PROFILE__',
    name: local.profile,
    action: 'allow',
    rule: 0,
  });
  return hits;
}
