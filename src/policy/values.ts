// The scalar values policies are made of (protocols, ports, CIDRs), validated with errors
// that name the field and the value, and held in forms cheap to test per connection:
// IPv4 CIDRs as two 32-bit numbers, not bigints.

import { parseCidr, parseIp } from '../enrich/ip.ts';

export class PolicyError extends Error {
  override name = 'PolicyError';
}

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An optional list field: absent or null is []. */
export function listOf(v: unknown, where: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new PolicyError(`${where}: must be a list, got ${JSON.stringify(v)}`);
  return v;
}

const PROTOCOLS: Readonly<Record<string, number>> = {
  TCP: 6,
  UDP: 17,
  ICMP: 1,
  ICMPV6: 58,
  SCTP: 132,
  UDPLITE: 136,
};

/** Calico/Kubernetes protocol: a name (any case) or a number 1–255. */
export function parseProtocol(v: unknown, where: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 255) return v;
  if (typeof v === 'string') {
    const n = PROTOCOLS[v.toUpperCase()];
    if (n !== undefined) return n;
    if (/^\d{1,3}$/.test(v) && Number(v) >= 1 && Number(v) <= 255) return Number(v);
  }
  throw new PolicyError(
    `${where}: unknown protocol ${JSON.stringify(v)} (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 1-255)`,
  );
}

export const PORT_PROTOCOLS: ReadonlySet<number> = new Set([6, 17, 132, 136]);

/** A port range (min..max inclusive) or a named port (resolved against an endpoint's container ports). */
export type PortSpec = { readonly min: number; readonly max: number } | { readonly name: string };

function portNumber(v: unknown, where: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535)
    throw new PolicyError(`${where}: port must be 0-65535, got ${JSON.stringify(v)}`);
  return n;
}

/** Calico port: 80, "80", "1000:2000", or a port name. */
export function parseCalicoPort(v: unknown, where: string): PortSpec {
  if (typeof v === 'number') {
    const n = portNumber(v, where);
    return { min: n, max: n };
  }
  if (typeof v !== 'string' || v === '') throw new PolicyError(`${where}: invalid port ${JSON.stringify(v)}`);
  const colon = v.indexOf(':');
  if (colon >= 0) {
    const min = portNumber(v.slice(0, colon), where);
    const max = portNumber(v.slice(colon + 1), where);
    if (min > max) throw new PolicyError(`${where}: port range ${JSON.stringify(v)} has min > max`);
    return { min, max };
  }
  if (/^\d+$/.test(v)) {
    const n = portNumber(v, where);
    return { min: n, max: n };
  }
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(v) || v.length > 15)
    throw new PolicyError(`${where}: invalid port name ${JSON.stringify(v)}`);
  return { name: v };
}

/** Kubernetes NetworkPolicyPort.port (+ endPort). */
export function parseK8sPort(port: unknown, endPort: unknown, where: string): PortSpec {
  if (typeof port === 'string' && !/^\d+$/.test(port)) {
    if (endPort !== undefined && endPort !== null)
      throw new PolicyError(`${where}.endPort: not allowed with a named port ${JSON.stringify(port)}`);
    return parseCalicoPort(port, `${where}.port`);
  }
  const min = portNumber(port, `${where}.port`);
  if (min === 0) throw new PolicyError(`${where}.port: must be 1-65535, got 0`);
  if (endPort === undefined || endPort === null) return { min, max: min };
  const max = portNumber(endPort, `${where}.endPort`);
  if (max < min) throw new PolicyError(`${where}.endPort: ${max} is below port ${min}`);
  return { min, max };
}

/** A CIDR in the form tested per connection. */
export interface Net {
  readonly family: 4 | 6;
  /** IPv4: network and mask as unsigned 32-bit numbers. */
  readonly v4base: number;
  readonly v4mask: number;
  /** IPv6: bigint base and prefix. */
  readonly v6base: bigint;
  readonly prefix: number;
  readonly text: string;
}

export function parseNet(v: unknown, where: string): Net {
  const c = typeof v === 'string' ? parseCidr(v) : null;
  if (c === null) throw new PolicyError(`${where}: invalid CIDR ${JSON.stringify(v)}`);
  if (c.family === 4) {
    const mask = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
    return {
      family: 4,
      v4base: Number(c.base) >>> 0,
      v4mask: mask,
      v6base: 0n,
      prefix: c.prefix,
      text: v as string,
    };
  }
  return { family: 6, v4base: 0, v4mask: 0, v6base: c.base, prefix: c.prefix, text: v as string };
}

/** An address as policies test it: IPv4 as an unsigned number, IPv6 as a bigint. */
export interface PolicyIp {
  readonly family: 4 | 6;
  readonly v4: number;
  readonly v6: bigint;
}

/** Dotted-quad text as an unsigned number without a regex or a bigint (once per new connection); -1 if not one. */
function v4Number(s: string): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return v * 256 + part;
}

export function policyIp(text: string): PolicyIp | null {
  if (!text.includes(':')) {
    const n = v4Number(text);
    return n < 0 ? null : { family: 4, v4: n, v6: 0n };
  }
  const p = parseIp(text);
  if (p === null) return null;
  return p.family === 4
    ? { family: 4, v4: Number(p.value) >>> 0, v6: 0n }
    : { family: 6, v4: 0, v6: p.value };
}

export function netContains(n: Net, ip: PolicyIp): boolean {
  if (n.family !== ip.family) return false;
  if (n.family === 4) return (ip.v4 & n.v4mask) >>> 0 === n.v4base;
  const host = BigInt(128 - n.prefix);
  return ip.v6 >> host === n.v6base >> host;
}

export function anyNetContains(nets: readonly Net[], ip: PolicyIp): boolean {
  for (const n of nets) if (netContains(n, ip)) return true;
  return false;
}
