// IP address helpers for endpoint resolution: parsing, canonical text, CIDR matching and
// the private/public split of SPEC §2. Addresses are held as bigint (v4: 32 bits, v6: 128
// bits); these run once per connection or per metadata object, never per packet.

import { formatIpv6Groups } from '../common/ipv6-text.ts';

export interface ParsedIp {
  readonly family: 4 | 6;
  readonly value: bigint;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly base: bigint;
  readonly prefix: number;
}

const V4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseV4(s: string): bigint | null {
  const m = V4_RE.exec(s);
  if (m === null) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part[0] === '0') return null; // no octal-looking octets
    const n = Number(part);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return BigInt(v);
}

function parseV6(input: string): bigint | null {
  let s = input;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (s.length < 2) return null;
  // Embedded IPv4 tail (::ffff:1.2.3.4).
  let tail: bigint | null = null;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) > lastColon) {
    tail = parseV4(s.slice(lastColon + 1));
    if (tail === null) return null;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const dbl = s.indexOf('::');
  if (dbl >= 0 && s.indexOf('::', dbl + 1) >= 0) return null;
  let groups: string[];
  if (dbl >= 0) {
    const head = s.slice(0, dbl) === '' ? [] : s.slice(0, dbl).split(':');
    const rest = s.slice(dbl + 2) === '' ? [] : s.slice(dbl + 2).split(':');
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<string>(fill).fill('0'), ...rest];
  } else {
    groups = s.split(':');
  }
  if (groups.length !== 8) return null;
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(Number.parseInt(g, 16));
  }
  if (tail !== null) v = (v & ~0xffffffffn) | tail;
  return v;
}

export function parseIp(s: string): ParsedIp | null {
  if (s.includes(':')) {
    const v = parseV6(s);
    return v === null ? null : { family: 6, value: v };
  }
  const v = parseV4(s);
  return v === null ? null : { family: 4, value: v };
}

function formatV6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  return formatIpv6Groups(groups);
}

export function formatIp(ip: ParsedIp): string {
  if (ip.family === 6) return formatV6(ip.value);
  const n = Number(ip.value);
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** RFC 5952 text for v6, dotted quad for v4; null if `s` is not an address. */
export function canonicalIp(s: string): string | null {
  const p = parseIp(s);
  return p === null ? null : formatIp(p);
}

export function parseCidr(s: string): Cidr | null {
  const slash = s.indexOf('/');
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (ip === null) return null;
  const bits = ip.family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > bits) return null;
  }
  const hostBits = BigInt(bits - prefix);
  const base = (ip.value >> hostBits) << hostBits;
  return { family: ip.family, base, prefix };
}

export function cidrContains(c: Cidr, ip: ParsedIp): boolean {
  if (c.family !== ip.family) return false;
  const hostBits = BigInt((c.family === 4 ? 32 : 128) - c.prefix);
  return ip.value >> hostBits === c.base >> hostBits;
}

const PRIVATE_CIDRS: readonly Cidr[] = [
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10', // CGNAT (RFC 6598)
  '169.254.0.0/16', // IPv4 link-local
  '127.0.0.0/8', // loopback
  'fc00::/7', // IPv6 unique local
  'fe80::/10', // IPv6 link-local
  '::1/128', // IPv6 loopback
].map((c) => parseCidr(c)!);

/**
 * The decimal number at `from` up to the next '.', and its length: (length << 8) | value;
 * -1 when there is none or it is over 255.
 */
function leadingOctet(ip: string, from: number): number {
  let v = 0;
  let i = from;
  for (; i < ip.length && i < from + 3; i++) {
    const d = ip.charCodeAt(i) - 48;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  if (i === from || v > 255 || ip.charCodeAt(i) !== 46) return -1;
  return ((i - from) << 8) | v;
}

/** SPEC §2: `pvt` for RFC 1918, CGNAT, ULA, link-local (and loopback); `pub` otherwise. */
export function privacyOf(ip: string): 'pvt' | 'pub' {
  if (!ip.includes(':')) {
    // IPv4 fast path (twice per new connection to an unknown peer): the first two octets
    // read in place, no regex match array, no BigInt.
    const a = leadingOctet(ip, 0);
    const b = a < 0 ? -1 : leadingOctet(ip, (a >> 8) + 1);
    if (a < 0 || b < 0 || !V4_RE.test(ip)) return 'pub';
    const x = a & 0xff;
    const y = b & 0xff;
    if (x === 10 || x === 127) return 'pvt';
    if (x === 172 && y >= 16 && y <= 31) return 'pvt';
    if (x === 192 && y === 168) return 'pvt';
    if (x === 100 && y >= 64 && y <= 127) return 'pvt';
    if (x === 169 && y === 254) return 'pvt';
    return 'pub';
  }
  const p = parseIp(ip);
  if (p === null) return 'pub';
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it carries.
  if (p.family === 6 && p.value >> 32n === 0xffffn) {
    return privacyOf(formatIp({ family: 4, value: p.value & 0xffffffffn }));
  }
  for (const c of PRIVATE_CIDRS) if (cidrContains(c, p)) return 'pvt';
  return 'pub';
}
