import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import type { ConnectionUpdate } from '../../../src/datapath/types.ts';
import { Hook, InitiatorHow } from '../../../src/datapath/types.ts';
import type { ClusterMetadata, PodMeta } from '../../../src/enrich/kube.ts';
import { EndpointResolver } from '../../../src/enrich/resolver.ts';

export const T0 = 1_700_000_000_000; // aggregator start, Unix ms
/** Flush times five minutes apart. */
export const F1 = T0 + 300_000;
export const F2 = T0 + 600_000;
export const F3 = T0 + 900_000;

/**
 * An update as the datapath would deliver it. Defaults: TCP on a pod veth ('cali1'),
 * first packet seen at egress from the initiator, i.e. the local pod is the responder
 * (reporter dst).
 */
export function upd(p: Partial<ConnectionUpdate> & { srcIp: string; dstIp: string }): ConnectionUpdate {
  const srcPort = p.srcPort ?? 40000;
  const dstPort = p.dstPort ?? 80;
  const proto = p.proto ?? 6;
  const interfaceName = p.interfaceName ?? 'cali1';
  return {
    key: p.key ?? `${interfaceName}|${proto}|${p.srcIp}:${srcPort}|${p.dstIp}:${dstPort}`,
    ifindex: p.ifindex ?? 7,
    interfaceName,
    family: p.family ?? (p.srcIp.includes(':') ? 6 : 4),
    proto,
    srcIp: p.srcIp,
    dstIp: p.dstIp,
    srcPort,
    dstPort,
    icmpType: p.icmpType ?? 0,
    icmpCode: p.icmpCode ?? 0,
    origPackets: p.origPackets ?? 0,
    origBytes: p.origBytes ?? 0,
    replyPackets: p.replyPackets ?? 0,
    replyBytes: p.replyBytes ?? 0,
    origTcpFlags: p.origTcpFlags ?? 0,
    replyTcpFlags: p.replyTcpFlags ?? 0,
    firstSeenMs: p.firstSeenMs ?? T0 + 1000,
    lastSeenMs: p.lastSeenMs ?? T0 + 1000,
    initiatorHow: p.initiatorHow ?? InitiatorHow.syn,
    firstHook: p.firstHook ?? Hook.egress,
    firstFromInitiator: p.firstFromInitiator ?? true,
    ...(p.dropReason ? { dropReason: p.dropReason, dropReasonName: p.dropReasonName ?? '' } : {}),
    ...(p.icmpId !== undefined ? { icmpId: p.icmpId } : {}),
  };
}

/** Reported at the source: on a pod veth the initiator's packet is seen at ingress. */
export const AT_SRC = { firstHook: Hook.ingress, firstFromInitiator: true } as const;
export const AT_DST = { firstHook: Hook.egress, firstFromInitiator: true } as const;

export function pod(
  namespace: string,
  name: string,
  ip: string,
  generateName: string | null,
  labels: Record<string, string> = {},
): PodMeta {
  return { name, namespace, generateName, labels, ips: [ip], nodeName: 'node1', hostNetwork: false };
}

export function metadata(p: Partial<ClusterMetadata>): ClusterMetadata {
  return { pods: [], services: [], nodes: [], namespaces: [], networkSets: [], ...p };
}

export function resolverWith(md?: ClusterMetadata, nodeIps: string[] = []): EndpointResolver {
  const r = new EndpointResolver({
    nodeName: 'node1',
    nodeIps,
    hostEndpoints: nodeIps.length > 0,
    networkSets: true,
    historyMs: 600_000,
  });
  if (md !== undefined) r.update(md, T0);
  return r;
}

export const CLIENT = '10.0.0.1';
export const CIP = '10.96.0.10';
export const BACKEND = '10.0.0.9';
/** A client pod and a web pod behind the Service `web` (cluster IP CIP, port 80 → 8080). */
export const md = metadata({
  pods: [pod('default', 'client-abc', CLIENT, 'client-'), pod('default', 'web-xyz', BACKEND, 'web-')],
  services: [
    {
      name: 'web',
      namespace: 'default',
      clusterIps: [CIP],
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
    },
  ],
});

/** An aggregator at kind 0 for both actions, on node1 from T0. */
export function k0(
  resolver = resolverWith(),
  extra: Partial<ConstructorParameters<typeof FlowAggregator>[0]> = {},
) {
  return new FlowAggregator({
    nodeName: 'node1',
    resolver,
    startTimeMs: T0,
    kindForAllowed: 0,
    kindForDenied: 0,
    ...extra,
  });
}
