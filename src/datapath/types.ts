// The datapath's view of one (interface, connection) after one drain of the kernel map.
//
// Counters are deltas since the previous update for the same `key`: the kernel map is
// emptied at every drain, so a long-lived connection yields one update per drain in
// which it saw packets (and none while idle). Orientation is by initiator: `src` opened
// the connection, `orig*` counts initiator -> responder, `reply*` the other way.
// Bytes are IP-layer bytes as conntrack accounting counts them (SPEC §1).

import { CT_EVENT_DESTROY, CT_EVENT_DUMP, CT_EVENT_DUMP_DONE, CT_EVENT_NEW } from './layout.ts';

/** How the kernel program decided which side initiated the connection. Higher is surer. */
export const InitiatorHow = {
  /** Port heuristic (ephemeral port = client) on a mid-stream first packet. */
  portGuess: 0,
  /** Sender of the first packet the program saw (non-TCP, or TCP without SYN). */
  firstPacket: 1,
  /** The host's conntrack entry's original direction. */
  conntrack: 2,
  /** A TCP SYN without ACK. */
  syn: 3,
} as const;
export type InitiatorHow = (typeof InitiatorHow)[keyof typeof InitiatorHow];

/** Which TC hook saw the connection's first packet on this interface. */
export const Hook = { ingress: 0, egress: 1 } as const;
export type Hook = (typeof Hook)[keyof typeof Hook];

export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

export interface ConnectionUpdate {
  /**
   * Identity of the (interface, connection), independent of direction and stable across
   * drains: equal keys are the same connection on the same interface.
   */
  readonly key: string;
  readonly ifindex: number;
  /** Interface name at the time of the drain ('' if unknown). */
  readonly interfaceName: string;
  readonly family: 4 | 6;
  /** IANA protocol number (6 tcp, 17 udp, 1 icmp, 58 icmp6, 132 sctp). */
  readonly proto: number;
  readonly srcIp: string;
  readonly dstIp: string;
  /** 0 for ICMP/ICMPv6 and for non-first fragments. */
  readonly srcPort: number;
  readonly dstPort: number;
  /** ICMP/ICMPv6 type and code of the first packet; 0 otherwise. */
  readonly icmpType: number;
  readonly icmpCode: number;
  /** ICMP echo identifier (what conntrack keys ICMP by); absent or 0 otherwise. */
  readonly icmpId?: number;
  readonly origPackets: number;
  readonly origBytes: number;
  readonly replyPackets: number;
  readonly replyBytes: number;
  /** OR of TCP flags seen in each direction during this delta. */
  readonly origTcpFlags: number;
  readonly replyTcpFlags: number;
  /** Unix epoch milliseconds. */
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  readonly initiatorHow: InitiatorHow;
  /** Hook that saw the first packet of this delta, and whether the initiator sent it. */
  readonly firstHook: Hook;
  readonly firstFromInitiator: boolean;
  /**
   * Whether the initiator is side a of the key (the key's own order, not the addresses'
   * meaning): lets a consumer compare orientations without formatting addresses. Optional
   * for hand-built updates; consumers fall back to comparing srcIp/srcPort.
   */
  readonly initiatorIsSideA?: boolean;
  /**
   * 0: packets the TC program counted (allowed as far as we know). Otherwise these are
   * packets the kernel dropped by policy after TC counted them (enum skb_drop_reason,
   * name in `dropReasonName`): the aggregator moves them from `allow` to `deny`.
   * Optional so that hand-built updates (tests, replays) are allowed traffic.
   */
  readonly dropReason?: number;
  readonly dropReasonName?: string;
  /**
   * An interface's overflow counts, not a connection: packets of connections the kernel
   * map had no room for (src/aggregate/overflow.ts). Only ifindex, interfaceName, family,
   * proto and the counters mean something: orig* is what the interface's ingress hook
   * counted, reply* its egress; addresses and ports are empty.
   */
  readonly overflow?: boolean;
  /** Replayed at start from a previous run's drain journal (src/datapath/journal.ts). */
  readonly replayed?: boolean;
}

/** What a conntrack record says happened. */
/** dumpDone: a complete dump (initial or resync) ended; `timeMs` is when it was requested. */
export const ConntrackEventType = {
  new: CT_EVENT_NEW,
  destroy: CT_EVENT_DESTROY,
  dump: CT_EVENT_DUMP,
  dumpDone: CT_EVENT_DUMP_DONE,
} as const;
export type ConntrackEventType = (typeof ConntrackEventType)[keyof typeof ConntrackEventType];

/**
 * One conntrack event (NEW, DESTROY) or dumped entry, from the node's conntrack. `orig*`
 * is the tuple as the initiator sent it (a Service's cluster IP before DNAT), `reply*` as
 * the responder answers (the backend). For ICMP echo the ports carry the identifier.
 * Delivered as a reused view: copy what you keep.
 */
export interface ConntrackEvent {
  readonly type: ConntrackEventType;
  readonly id: number;
  readonly proto: number;
  readonly family: 4 | 6;
  readonly origSrc: string;
  readonly origDst: string;
  readonly origSport: number;
  readonly origDport: number;
  readonly replySrc: string;
  readonly replyDst: string;
  readonly replySport: number;
  readonly replyDport: number;
  /** A DESTROY inferred by a resync after lost events (no counters). */
  readonly synthetic: boolean;
  /** dumpDone: events were lost (receive buffer overrun) since the previous dump. */
  readonly afterOverrun: boolean;
  /** Whether the counters are valid (nf_conntrack_acct=1). DESTROY: the final ones. */
  readonly hasCounters: boolean;
  readonly origPackets: number;
  readonly origBytes: number;
  readonly replyPackets: number;
  readonly replyBytes: number;
  /** Unix ms: when received, or conntrack's own stop time for a DESTROY when known. */
  readonly timeMs: number;
}
