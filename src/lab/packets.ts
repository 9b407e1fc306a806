// Hand-built frames for BPF_PROG_TEST_RUN: well-formed ones and deliberately broken ones.

const MAC = [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];

export function ether(type: number, payload: number[], vlans: number[] = []): Uint8Array {
  const out = [...MAC];
  for (const tpid of vlans) out.push(tpid >> 8, tpid & 0xff, 0x00, 0x0a); // VLAN 10
  out.push(type >> 8, type & 0xff, ...payload);
  return Uint8Array.from(out);
}

function be16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

export function ipv4(
  proto: number,
  src: number[],
  dst: number[],
  l4: number[],
  opts: { ihl?: number; fragOffset?: number; options?: number[] } = {},
): number[] {
  const options = opts.options ?? [];
  const ihl = opts.ihl ?? 5 + options.length / 4;
  const total = 20 + options.length + l4.length;
  return [
    0x40 | ihl,
    0,
    ...be16(total),
    0,
    1,
    ...be16(opts.fragOffset ?? 0),
    64,
    proto,
    0,
    0,
    ...src,
    ...dst,
    ...options,
    ...l4,
  ];
}

export function ipv6(next: number, src: number[], dst: number[], rest: number[]): number[] {
  return [0x60, 0, 0, 0, ...be16(rest.length), next, 64, ...src, ...dst, ...rest];
}

export function tcp(sport: number, dport: number, flags: number, payload = 0): number[] {
  return [
    ...be16(sport),
    ...be16(dport),
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0x50,
    flags,
    0xff,
    0xff,
    0,
    0,
    0,
    0,
    ...new Array(payload).fill(0),
  ];
}

export function udp(sport: number, dport: number, payload = 0): number[] {
  return [...be16(sport), ...be16(dport), ...be16(8 + payload), 0, 0, ...new Array(payload).fill(0)];
}

export function icmpEcho(type: number, id: number, seq: number): number[] {
  return [type, 0, 0, 0, ...be16(id), ...be16(seq), 1, 2, 3, 4];
}

/** An IPv6 extension header (hop-by-hop 0, destination options 60, routing 43) of 8 bytes. */
export function ext8(next: number): number[] {
  return [next, 0, 1, 4, 0, 0, 0, 0];
}

export function fragment6(next: number, offset: number, more: boolean): number[] {
  return [next, 0, ...be16((offset << 3) | (more ? 1 : 0)), 0, 0, 0, 7];
}

export const V4A = [10, 0, 0, 1];
export const V4B = [10, 0, 0, 2];
export const V6A = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
export const V6B = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
