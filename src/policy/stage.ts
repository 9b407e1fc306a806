// What the aggregator asks of the policy stage (PolicyEngine implements it; tests may
// pass their own).

import type { Endpoint } from '../enrich/resolver.ts';
import type { Trace } from './trace.ts';
import type { Direction } from './types.ts';

export interface PolicyStage {
  /** Changes whenever policies or labels change (cached traces are then stale). */
  readonly version: number;
  /** The trace of a connection for the direction its reporter enforces (ingress at dst, egress at src). */
  evaluate(
    direction: Direction,
    src: Endpoint,
    dst: Endpoint,
    srcIp: string,
    dstIp: string,
    proto: number,
    srcPort: number,
    dstPort: number,
    /** ICMP/ICMPv6: type << 8 | code of the connection's first message; -1 or absent when unknown. */
    icmp?: number,
  ): Trace;
  /** Whether `ep` is a pod on this node: its ingress is enforced here too. */
  onNode(ep: Endpoint): boolean;
}
