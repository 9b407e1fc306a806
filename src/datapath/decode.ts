// Decodes ring records in place: one reusable view over the caller's buffer, so no
// object is made per record. Field getters read the DataView on demand.

import { flat } from '../common/flat.ts';
import { formatIpv6Groups } from '../common/ipv6-text.ts';
import {
  CT_FLAG_AFTER_OVERRUN,
  CT_FLAG_COUNTERS,
  CT_FLAG_SYNTHETIC,
  CtRecord,
  CtTuple,
  FlowCounters,
  FlowKey,
  RING_RECORD_OVERFLOW,
  Ring,
} from './layout.ts';
import type { ConnectionUpdate, ConntrackEvent, ConntrackEventType, Hook, InitiatorHow } from './types.ts';

const K = Ring.key;
const C = Ring.counters;
const TWO_32 = 2 ** 32;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;

// Address text is interned: a connection and its conntrack entry keep their addresses as
// strings, and the same few addresses (this node's pods) recur in most of them, so one
// shared string each instead of one per record. Bounded: cleared when full.
const MAX_INTERNED = 65_536;
const v4Text = new Map<number, string>();
const v6Text = new Map<string, string>();
/** Keys v6Text by the raw bytes (a one-to-one mapping of bytes to characters). */
const latin1 = new TextDecoder('latin1');

/** Text form of a 16-byte address (IPv4-mapped when family is 4), RFC 5952 for IPv6. */
export function formatAddress(bytes: Uint8Array, offset: number, family: number): string {
  if (family === 4) {
    // Signed, so that every address is a small-integer key.
    const n =
      (bytes[offset + 12]! << 24) |
      (bytes[offset + 13]! << 16) |
      (bytes[offset + 14]! << 8) |
      bytes[offset + 15]!;
    let t = v4Text.get(n);
    if (t === undefined) {
      if (v4Text.size >= MAX_INTERNED) v4Text.clear();
      t = flat(`${bytes[offset + 12]}.${bytes[offset + 13]}.${bytes[offset + 14]}.${bytes[offset + 15]}`);
      v4Text.set(n, t);
    }
    return t;
  }
  const raw = latin1.decode(bytes.subarray(offset, offset + 16));
  let t = v6Text.get(raw);
  if (t === undefined) {
    if (v6Text.size >= MAX_INTERNED) v6Text.clear();
    const groups: number[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((bytes[offset + i]! << 8) | bytes[offset + i + 1]!);
    t = formatIpv6Groups(groups);
    v6Text.set(raw, t);
  }
  return t;
}

export class FlowRecordView implements ConnectionUpdate {
  private readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private readonly buf: Buffer;
  private base = 0;
  private interfaceNames: (ifindex: number) => string;
  private dropReasonNames: (reason: number) => string;
  /** Set while a previous run's journal is replayed through this view. */
  replayed = false;

  constructor(
    into: Uint8Array,
    interfaceNames: (ifindex: number) => string = () => '',
    dropReasonNames: (reason: number) => string = String,
  ) {
    this.bytes = into;
    this.dv = new DataView(into.buffer, into.byteOffset, into.byteLength);
    this.buf = Buffer.from(into.buffer, into.byteOffset, into.byteLength);
    this.interfaceNames = interfaceNames;
    this.dropReasonNames = dropReasonNames;
  }

  /** Points the view at record `index` of the buffer; returns the record type. */
  at(index: number): number {
    this.base = index * 128;
    return this.dv.getUint32(this.base + Ring.type, true);
  }

  private u8(off: number): number {
    return this.bytes[this.base + off]!;
  }
  private u64(off: number): number {
    const lo = this.dv.getUint32(this.base + off, true);
    const hi = this.dv.getUint32(this.base + off + 4, true);
    return hi * TWO_32 + lo;
  }
  /** 0 when side a initiated, 1 when side b did. */
  private get initiatorSide(): number {
    return this.u8(C + FlowCounters.initiator);
  }
  private isIcmp(): boolean {
    const p = this.proto;
    return p === IPPROTO_ICMP || p === IPPROTO_ICMPV6;
  }

  /**
   * The record's identity as a string (map key): the key's bytes, or for IPv4 only the
   * bytes that can differ (ifindex, the two IPv4 addresses, ports, proto), as 9 UTF-16
   * code units: a 40-byte string instead of a 64-byte one, kept per connection.
   */
  get key(): string {
    const b = this.bytes;
    const k = this.base + K;
    if (b[k + FlowKey.family] !== 4) return this.buf.toString('latin1', k, k + FlowKey.size);
    const a = k + FlowKey.addr_a + 12;
    const z = k + FlowKey.addr_b + 12;
    return String.fromCharCode(
      b[k]! | (b[k + 1]! << 8),
      b[k + 2]! | (b[k + 3]! << 8),
      b[a]! | (b[a + 1]! << 8),
      b[a + 2]! | (b[a + 3]! << 8),
      b[z]! | (b[z + 1]! << 8),
      b[z + 2]! | (b[z + 3]! << 8),
      b[k + FlowKey.port_a]! | (b[k + FlowKey.port_a + 1]! << 8),
      b[k + FlowKey.port_b]! | (b[k + FlowKey.port_b + 1]! << 8),
      b[k + FlowKey.proto]!,
    );
  }
  get ifindex(): number {
    return this.dv.getUint32(this.base + K + FlowKey.ifindex, true);
  }
  get interfaceName(): string {
    return this.interfaceNames(this.ifindex);
  }
  get family(): 4 | 6 {
    return this.u8(K + FlowKey.family) === 6 ? 6 : 4;
  }
  get proto(): number {
    return this.u8(K + FlowKey.proto);
  }
  get srcIp(): string {
    const off = this.initiatorSide === 0 ? FlowKey.addr_a : FlowKey.addr_b;
    return formatAddress(this.bytes, this.base + K + off, this.family);
  }
  get dstIp(): string {
    const off = this.initiatorSide === 0 ? FlowKey.addr_b : FlowKey.addr_a;
    return formatAddress(this.bytes, this.base + K + off, this.family);
  }
  get srcPort(): number {
    if (this.isIcmp()) return 0;
    const off = this.initiatorSide === 0 ? FlowKey.port_a : FlowKey.port_b;
    return this.dv.getUint16(this.base + K + off, true);
  }
  get dstPort(): number {
    if (this.isIcmp()) return 0;
    const off = this.initiatorSide === 0 ? FlowKey.port_b : FlowKey.port_a;
    return this.dv.getUint16(this.base + K + off, true);
  }
  get icmpType(): number {
    return this.isIcmp() ? this.u8(C + FlowCounters.icmp_type) : 0;
  }
  get icmpCode(): number {
    return this.isIcmp() ? this.u8(C + FlowCounters.icmp_code) : 0;
  }
  /** ICMP echo identifier (both key ports carry it). */
  get icmpId(): number {
    return this.dv.getUint16(this.base + K + FlowKey.port_a, true);
  }
  get origPackets(): number {
    return this.u64(C + FlowCounters.packets + 8 * this.initiatorSide);
  }
  get replyPackets(): number {
    return this.u64(C + FlowCounters.packets + 8 * (1 - this.initiatorSide));
  }
  get origBytes(): number {
    return this.u64(C + FlowCounters.bytes + 8 * this.initiatorSide);
  }
  get replyBytes(): number {
    return this.u64(C + FlowCounters.bytes + 8 * (1 - this.initiatorSide));
  }
  get origTcpFlags(): number {
    return (
      (this.dv.getUint32(this.base + C + FlowCounters.tcp_flags, true) >>> (8 * this.initiatorSide)) & 0xff
    );
  }
  get replyTcpFlags(): number {
    return (
      (this.dv.getUint32(this.base + C + FlowCounters.tcp_flags, true) >>> (8 * (1 - this.initiatorSide))) &
      0xff
    );
  }
  get firstSeenMs(): number {
    return Math.floor(this.u64(C + FlowCounters.first_seen_ns) / 1e6);
  }
  get lastSeenMs(): number {
    return Math.floor(this.u64(C + FlowCounters.last_seen_ns) / 1e6);
  }
  get initiatorHow(): InitiatorHow {
    return this.u8(C + FlowCounters.initiator_how) as InitiatorHow;
  }
  get firstHook(): Hook {
    return this.u8(C + FlowCounters.first_hook) as Hook;
  }
  get initiatorIsSideA(): boolean {
    return this.initiatorSide === 0;
  }
  get firstFromInitiator(): boolean {
    return this.u8(C + FlowCounters.first_dir) === this.initiatorSide;
  }
  get dropReason(): number {
    return this.dv.getUint32(this.base + Ring.drop_reason, true);
  }
  get overflow(): boolean {
    return this.dv.getUint32(this.base + Ring.type, true) === RING_RECORD_OVERFLOW;
  }
  get dropReasonName(): string {
    const r = this.dropReason;
    return r === 0 ? '' : this.dropReasonNames(r);
  }
}

/** A reusable view of conntrack ring records (RING_RECORD_CONNTRACK). */
export class ConntrackEventView implements ConntrackEvent {
  private readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private base = 0;

  constructor(into: Uint8Array) {
    this.bytes = into;
    this.dv = new DataView(into.buffer, into.byteOffset, into.byteLength);
  }

  /** Points the view at record `index` of the buffer; returns the record type. */
  at(index: number): number {
    this.base = index * 128;
    return this.dv.getUint32(this.base + Ring.type, true);
  }

  private u64(off: number): number {
    const lo = this.dv.getUint32(this.base + off, true);
    const hi = this.dv.getUint32(this.base + off + 4, true);
    return hi * TWO_32 + lo;
  }
  private addr(tuple: number, field: number): string {
    return formatAddress(this.bytes, this.base + tuple + field, this.family);
  }
  private port(tuple: number, field: number): number {
    return this.dv.getUint16(this.base + tuple + field, true);
  }

  get type(): ConntrackEventType {
    return this.bytes[this.base + CtRecord.event] as ConntrackEventType;
  }
  get id(): number {
    return this.dv.getUint32(this.base + CtRecord.id, true);
  }
  get proto(): number {
    return this.bytes[this.base + CtRecord.proto]!;
  }
  get family(): 4 | 6 {
    return this.bytes[this.base + CtRecord.family] === 6 ? 6 : 4;
  }
  get synthetic(): boolean {
    return (this.bytes[this.base + CtRecord.flags]! & CT_FLAG_SYNTHETIC) !== 0;
  }
  get afterOverrun(): boolean {
    return (this.bytes[this.base + CtRecord.flags]! & CT_FLAG_AFTER_OVERRUN) !== 0;
  }
  get hasCounters(): boolean {
    return (this.bytes[this.base + CtRecord.flags]! & CT_FLAG_COUNTERS) !== 0;
  }
  get origSrc(): string {
    return this.addr(CtRecord.orig, CtTuple.src);
  }
  get origDst(): string {
    return this.addr(CtRecord.orig, CtTuple.dst);
  }
  get origSport(): number {
    return this.port(CtRecord.orig, CtTuple.sport);
  }
  get origDport(): number {
    return this.port(CtRecord.orig, CtTuple.dport);
  }
  get replySrc(): string {
    return this.addr(CtRecord.reply, CtTuple.src);
  }
  get replyDst(): string {
    return this.addr(CtRecord.reply, CtTuple.dst);
  }
  get replySport(): number {
    return this.port(CtRecord.reply, CtTuple.sport);
  }
  get replyDport(): number {
    return this.port(CtRecord.reply, CtTuple.dport);
  }
  get origPackets(): number {
    return this.u64(CtRecord.packets);
  }
  get replyPackets(): number {
    return this.u64(CtRecord.packets + 8);
  }
  get origBytes(): number {
    return this.u64(CtRecord.bytes);
  }
  get replyBytes(): number {
    return this.u64(CtRecord.bytes + 8);
  }
  get timeMs(): number {
    return Math.floor(this.u64(CtRecord.time_ns) / 1e6);
  }
}
