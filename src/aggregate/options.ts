// What a FlowAggregator is given (its options, the ones a SIGHUP may change, their
// defaults) and what it counts (its stats).

import type { EndpointResolver } from '../enrich/resolver.ts';
import type { PolicyStage } from '../policy/stage.ts';
import type { AggregationKind } from './record.ts';

export type ResolverLike = Pick<EndpointResolver, 'resolve' | 'service' | 'isNodeIp' | 'version'>;

export interface AggregatorOptions {
  readonly nodeName: string;
  readonly resolver: ResolverLike;
  /** Start of the first interval (Unix ms). */
  readonly startTimeMs: number;
  readonly kindForAllowed?: AggregationKind;
  readonly kindForDenied?: AggregationKind;
  readonly enabledForAllowed?: boolean;
  readonly enabledForDenied?: boolean;
  readonly includeLabels?: boolean;
  readonly includePolicies?: boolean;
  readonly includeService?: boolean;
  /**
   * The policy stage: each connection's trace (with includePolicies) and the verdict
   * cross-check. Without it, records carry empty policy lists.
   */
  readonly policy?: PolicyStage;
  /** FlowLogsEnableHostEndpoint: report the host's own connections seen on host interfaces. */
  readonly hostEndpoints?: boolean;
  /** Non-TCP connections end after this long without packets (FlowLogsIdleTimeout). */
  readonly idleTimeoutMs?: number;
  /** TCP connections without FIN/RST end after this long without packets (FlowLogsTcpIdleTimeout). */
  readonly tcpIdleTimeoutMs?: number;
  /** Globs of workload (pod veth host-side) interface names. */
  readonly workloadInterfaces?: readonly string[];
  /**
   * Connection table bound (MaxConnections): an allowed new connection beyond it goes to
   * its interface's overflow records (counted, not lost); a denied one is dropped and
   * counted.
   */
  readonly maxConnections?: number;
  /**
   * Called when the lifecycle source is decided or changes: 'conntrack' once conntrack
   * events arrive (NEW/DESTROY start and end connections it tracks), 'tcp-flags+idle'
   * before (FIN/RST and idle timeouts only). For the daemon's log.
   */
  readonly onLifecycleSource?: (source: LifecycleSource) => void;
}

export type LifecycleSource = 'conntrack' | 'tcp-flags+idle';

/** The options FlowAggregator.reconfigure() applies from the next flush on (SIGHUP). */
export type ReconfigurableOptions = Pick<
  AggregatorOptions,
  | 'kindForAllowed'
  | 'kindForDenied'
  | 'enabledForAllowed'
  | 'enabledForDenied'
  | 'includeLabels'
  | 'includePolicies'
  | 'includeService'
  | 'idleTimeoutMs'
  | 'tcpIdleTimeoutMs'
>;

export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;
// The daemon holds ~0.65 KB a connection between flushes and up to ~1.2 KB during a
// kind-0 flush (BENCHMARKS.md, 100k connections: 146 MB median, 198 peak, 81 idle):
// 300k stay under the DaemonSet's 512 MiB limit with headroom; a million would not.
export const DEFAULT_MAX_CONNECTIONS = 300_000;

export interface AggregatorStats {
  /** Updates passed to observe(). */
  updates: number;
  /** Open connections and closed ones kept one interval to absorb late packets. */
  connections: number;
  /** Connection slots the numbers slab holds (live and free): its memory is 56 B a slot. */
  connectionSlots: number;
  /** Updates for a disabled action (FlowLogsFileEnabledFor… false). */
  ignoredDisabled: number;
  /** Updates on host interfaces while host endpoints are off. */
  ignoredHostInterface: number;
  /** Updates on host interfaces for traffic that is not the host's own (forwarded pod traffic). */
  forwarded: number;
  /**
   * Updates of new connections the table had no room for (MaxConnections); an allowed
   * one's counts are in overflow records (overflowPackets), a denied one's are dropped
   * (droppedPackets, droppedBytes).
   */
  droppedTableFull: number;
  droppedPackets: number;
  droppedBytes: number;
  /** Connections that changed orientation on a surer initiator decision. */
  reoriented: number;
  flushes: number;
  records: number;
  /** Conntrack events observed; live entries known; connections joined to an entry. */
  conntrackEvents: number;
  conntrackEntries: number;
  conntrackJoined: number;
  /** Connections completed by a conntrack DESTROY (rather than FIN/RST or idle timeout). */
  conntrackCompleted: number;
  /**
   * Denied packets taken off an allow connection's counts (its deny twin reports them).
   * A drop drained before the allowed count of the same packets is counted when that
   * count arrives; it waits through one flush for it, then is forgotten uncounted.
   */
  deniedMoved: number;
  /** Policy traces asked of the policy stage (once per new connection; the stage caches). */
  policyEvaluations: number;
  /**
   * Verdict cross-check, once per connection, by the direction its reporter enforces:
   * the policies deny a connection the kernel delivered (…KernelAllowed), or allow one
   * the kernel dropped by policy (…KernelDropped).
   */
  policyMismatchIngressKernelAllowed: number;
  policyMismatchIngressKernelDropped: number;
  policyMismatchEgressKernelAllowed: number;
  policyMismatchEgressKernelDropped: number;
  /** Deny records moved to the destination pod's ingress (both pods here, its ingress denies). */
  policyDenyAtDestination: number;
  /** Evaluations (as policyEvaluations) decided by an Allow rule with an HTTP match: on its L3/L4 part, the HTTP part not evaluated. */
  policyHttpUnchecked: number;
  /** Evaluations (as policyEvaluations) whose enforcing end is a host endpoint: not evaluated, an empty trace. */
  policyHostEndpointUnevaluated: number;
  /** Packets and bytes in overflow records: of connections the kernel map or the table had no room for. */
  overflowPackets: number;
  overflowBytes: number;
  lifecycleSource: LifecycleSource;
}

export function zeroStats(): AggregatorStats {
  return {
    updates: 0,
    connections: 0,
    connectionSlots: 0,
    ignoredDisabled: 0,
    ignoredHostInterface: 0,
    forwarded: 0,
    droppedTableFull: 0,
    droppedPackets: 0,
    droppedBytes: 0,
    reoriented: 0,
    flushes: 0,
    records: 0,
    conntrackEvents: 0,
    conntrackEntries: 0,
    conntrackJoined: 0,
    conntrackCompleted: 0,
    deniedMoved: 0,
    policyEvaluations: 0,
    policyMismatchIngressKernelAllowed: 0,
    policyMismatchIngressKernelDropped: 0,
    policyMismatchEgressKernelAllowed: 0,
    policyMismatchEgressKernelDropped: 0,
    policyDenyAtDestination: 0,
    policyHttpUnchecked: 0,
    policyHostEndpointUnevaluated: 0,
    overflowPackets: 0,
    overflowBytes: 0,
    lifecycleSource: 'tcp-flags+idle',
  };
}
