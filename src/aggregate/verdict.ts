// The policy side of a connection's record: its trace (which policies and rules judged
// it, src/policy) and the cross-check of that verdict with what the kernel did.

import type { PolicyStage } from '../policy/stage.ts';
import { EMPTY_TRACE, type Trace } from '../policy/trace.ts';
import type { Conn } from './connections.ts';
import type { AggregatorStats } from './options.ts';

/**
 * The connection's policy trace for the direction its reporter enforces: the source's
 * egress at reporter src, the destination's ingress at reporter dst. A drop between two
 * pods of this node is seen on the source's interface only; it belongs to the direction
 * whose policies deny it, so when the source's egress allows it and the destination's
 * ingress denies it, the deny record moves to the destination (reporter dst).
 */
export function traceOf(p: PolicyStage | null, s: AggregatorStats, c: Conn, a: 0 | 1): Trace {
  if (p === null) return EMPTY_TRACE;
  s.policyEvaluations++;
  const src = c.srcEp!;
  const dst = c.dstEp!;
  const egress = c.localIsClient;
  const t = p.evaluate(
    egress ? 'egress' : 'ingress',
    src,
    dst,
    c.cIp,
    c.sIp,
    c.proto,
    c.cPort,
    c.sPort,
    c.icmp,
  );
  if ((egress ? src : dst).type === 'hep') s.policyHostEndpointUnevaluated++;
  if (t.httpUnchecked) s.policyHttpUnchecked++;
  if (a === 0 || !egress || t.verdict === 'deny' || !p.onNode(dst)) return t;
  s.policyEvaluations++;
  const atDst = p.evaluate('ingress', src, dst, c.cIp, c.sIp, c.proto, c.cPort, c.sPort, c.icmp);
  if (atDst.verdict !== 'deny') return t;
  c.localIsClient = false;
  s.policyDenyAtDestination++;
  return atDst;
}

/**
 * Compares the connection's policy verdict with the kernel's, once: a deny record the
 * policies allow, or an allowed connection they deny. An allowed one is judged at its
 * second flush or when it completes, so that drops drained late have moved its packets
 * to deny first; one that lost packets to a policy drop is not judged on its allow side.
 */
export function checkVerdict(s: AggregatorStats, c: Conn, a: 0 | 1, completes: boolean): void {
  const t = c.trace;
  if (c.verdictChecked || t === null || t.verdict === null) return;
  if (a === 0 && (c.denied || !(c.reported || completes))) return;
  c.verdictChecked = true;
  if (a === 0 && t.verdict === 'deny') {
    if (c.localIsClient) s.policyMismatchEgressKernelAllowed++;
    else s.policyMismatchIngressKernelAllowed++;
  } else if (a === 1 && t.verdict === 'allow') {
    if (c.localIsClient) s.policyMismatchEgressKernelDropped++;
    else s.policyMismatchIngressKernelDropped++;
  }
}
