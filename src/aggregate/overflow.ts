// Overflow records: the packets of connections that found the kernel's flow map full.
//
// The TC program cannot give such a packet an entry, so it adds it to its interface's
// overflow counts (per protocol and family, ingress and egress; bpf/include/maps.h), and
// the addon drains those with the flows as overflow updates (ConnectionUpdate.overflow).
// Each becomes, per interval, one record per (interface, protocol, direction) whose local
// side is the endpoint behind that interface (the last local address a connection there
// had; `net`/`unknown` before any) and whose peer is `net` named `overflow`: the peers of
// the connections are not known. It carries the packets and bytes, and no flows
// (num_flows, started and completed 0: how many connections they were is not known).
// So the sums of packets and bytes over an interval's records still equal the traffic.
// Connections the aggregator's own table had no room for (MaxConnections) go to the same
// records (observeUntracked), so a full table loses no counts either.

import type { ConnectionUpdate } from '../datapath/types.ts';
import type { Endpoint } from '../enrich/resolver.ts';
import { Conn, type ConnNumbers } from './connections.ts';
import type { InterfaceClassifier } from './interfaces.ts';
import type { AggregatorStats } from './options.ts';

/** The peer of an overflow record: connections whose peers were not recorded. */
export const NET_OVERFLOW: Endpoint = Object.freeze({
  type: 'net',
  name: '-',
  nameAggr: 'overflow',
  namespace: '-',
  labels: null,
});

/** The local side of an overflow record before any connection on its interface said whose it is. */
export const NET_UNKNOWN_LOCAL: Endpoint = Object.freeze({
  type: 'net',
  name: '-',
  nameAggr: 'unknown',
  namespace: '-',
  labels: null,
});

/**
 * The overflow side of one aggregator: the last local address of each (interface,
 * family), which names an overflow record's local side, and the overflow updates added
 * to their records' connections.
 */
export class OverflowRecords {
  readonly #stats: AggregatorStats;
  readonly #ifaces: InterfaceClassifier;
  readonly #hostEndpoints: boolean;
  /** Each (interface, family)'s last local address (the local side of its overflow records). */
  readonly #localIp = new Map<string, string>();

  constructor(stats: AggregatorStats, ifaces: InterfaceClassifier, hostEndpoints: boolean) {
    this.#stats = stats;
    this.#ifaces = ifaces;
    this.#hostEndpoints = hostEndpoints;
  }

  /** A connection on `ifname` had `ip` as its local address. */
  noteLocal(ifname: string, family: number, ip: string): void {
    this.#localIp.set(`${ifname}|${family}`, ip);
  }

  /** Packets of connections the kernel map had no room for; new connections go to `created`. */
  observe(u: ConnectionUpdate, table: Map<string, Conn>, nums: ConnNumbers, created: Conn[]): void {
    const role = this.#ifaces.role(u.interfaceName);
    // As for connections: a host interface's traffic is reported only with host endpoints.
    if (role === 'host' && !this.#hostEndpoints) {
      this.#stats.ignoredHostInterface++;
      return;
    }
    this.#stats.overflowPackets += u.origPackets + u.replyPackets;
    this.#stats.overflowBytes += u.origBytes + u.replyBytes;
    // Of the update's family: a pod's IPv6 link-local neighbour discovery is no IPv4 record's local side.
    const localIp = this.#localIp.get(`${u.interfaceName}|${u.family}`) ?? '';
    // orig* is what the ingress hook counted, reply* egress. On a pod's veth (host side),
    // ingress is what the pod sent; on a host interface, what the host received.
    const w = role === 'workload';
    const [sentP, sentB, recvP, recvB] = w
      ? [u.origPackets, u.origBytes, u.replyPackets, u.replyBytes]
      : [u.replyPackets, u.replyBytes, u.origPackets, u.origBytes];
    observeOverflow(u, sentP, sentB, recvP, recvB, localIp, table, nums, created);
  }

  /**
   * A connection update the aggregator's table had no room for (MaxConnections): its
   * counts go to its interface's overflow records, sent and received by its local side
   * (`localIsInitiator`), instead of being dropped.
   */
  observeUntracked(
    u: ConnectionUpdate,
    localIsInitiator: boolean,
    localIp: string,
    table: Map<string, Conn>,
    nums: ConnNumbers,
    created: Conn[],
  ): void {
    this.#stats.overflowPackets += u.origPackets + u.replyPackets;
    this.#stats.overflowBytes += u.origBytes + u.replyBytes;
    const [sentP, sentB, recvP, recvB] = localIsInitiator
      ? [u.origPackets, u.origBytes, u.replyPackets, u.replyBytes]
      : [u.replyPackets, u.replyBytes, u.origPackets, u.origBytes];
    observeOverflow(u, sentP, sentB, recvP, recvB, localIp, table, nums, created);
  }
}

/**
 * Adds one update's counts sent from and received by the local endpoint to its
 * interface's two overflow records' connections, making them when needed (and adding
 * those to `created`). `localIp` names the local side of a record it makes ('' if none).
 */
function observeOverflow(
  u: ConnectionUpdate,
  sentP: number,
  sentB: number,
  recvP: number,
  recvB: number,
  localIp: string,
  table: Map<string, Conn>,
  nums: ConnNumbers,
  created: Conn[],
): void {
  for (const out of [true, false]) {
    const p = out ? sentP : recvP;
    if (p === 0) continue;
    // '\u0002' cannot start a datapath key of this length: no collision with a connection.
    const k = `\u0002${u.ifindex}|${u.proto}|${u.family}|${out ? 'out' : 'in'}`;
    let c = table.get(k);
    if (c === undefined) {
      // The local endpoint is the client of "out" (reporter src) and the server of "in"
      // (reporter dst); the counts go client → server either way.
      // Field by field: `u` may be the datapath's reused view, whose fields are getters.
      const at: ConnectionUpdate = {
        key: k,
        ifindex: u.ifindex,
        interfaceName: u.interfaceName,
        family: u.family,
        proto: u.proto,
        srcIp: out ? localIp : '',
        dstIp: out ? '' : localIp,
        srcPort: 0,
        dstPort: 0,
        icmpType: 0,
        icmpCode: 0,
        origPackets: 0,
        origBytes: 0,
        replyPackets: 0,
        replyBytes: 0,
        origTcpFlags: 0,
        replyTcpFlags: 0,
        firstSeenMs: u.firstSeenMs,
        lastSeenMs: u.lastSeenMs,
        initiatorHow: u.initiatorHow,
        firstHook: u.firstHook,
        firstFromInitiator: true,
      };
      c = new Conn(at, out, nums);
      c.overflow = true;
      c.reported = true; // never "started": it is not a connection
      table.set(k, c);
      created.push(c);
    }
    c.c2sP += p;
    c.c2sB += out ? sentB : recvB;
    if (u.lastSeenMs > c.lastSeenMs) c.lastSeenMs = u.lastSeenMs;
    c.active = true;
  }
}
