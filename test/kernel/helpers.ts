// Shared by the kernel tests: why a test skips, a lab per suite, and summing datapath deltas per flow.
import { after, before } from 'node:test';
import type { ConnectionUpdate } from '../../src/datapath/types.ts';
import { type ConntrackEntry, Lab } from '../../src/lab/lab.ts';

/** Reason to skip a kernel test, or undefined when this machine can run it. */
export function kernelSkipReason(): string | undefined {
  if (process.getuid?.() !== 0)
    return 'needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to load eBPF and build netns labs';
  return undefined;
}

/**
 * A Lab with conntrack accounting for the describe() block that calls this: made before
 * its tests (then `ready(lab)`), destroyed after them (after `cleanup`, if given).
 */
export function suiteLab(ready: (lab: Lab) => void, cleanup?: () => Promise<void> | void): void {
  let lab: Lab | undefined;
  before(() => {
    lab = new Lab();
    lab.enableConntrack();
    ready(lab);
  });
  after(async () => {
    await cleanup?.();
    await lab?.destroy();
  });
}

export interface FlowTotals {
  interfaceName: string;
  proto: number;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  icmpId: number;
  origPackets: number;
  origBytes: number;
  replyPackets: number;
  replyBytes: number;
  origTcpFlags: number;
  replyTcpFlags: number;
  updates: number;
  initiatorHow: number[];
}

const PROTO: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

/** Sums every update per (interface, connection), as the datapath oriented it. */
export class FlowCollector {
  readonly flows = new Map<string, FlowTotals>();

  readonly onUpdate = (u: ConnectionUpdate & { icmpId?: number }): void => {
    let t = this.flows.get(u.key);
    if (!t) {
      t = {
        interfaceName: u.interfaceName,
        proto: u.proto,
        srcIp: u.srcIp,
        srcPort: u.srcPort,
        dstIp: u.dstIp,
        dstPort: u.dstPort,
        icmpId: u.icmpId ?? 0,
        origPackets: 0,
        origBytes: 0,
        replyPackets: 0,
        replyBytes: 0,
        origTcpFlags: 0,
        replyTcpFlags: 0,
        updates: 0,
        initiatorHow: [],
      };
      this.flows.set(u.key, t);
    }
    t.origPackets += u.origPackets;
    t.origBytes += u.origBytes;
    t.replyPackets += u.replyPackets;
    t.replyBytes += u.replyBytes;
    t.origTcpFlags |= u.origTcpFlags;
    t.replyTcpFlags |= u.replyTcpFlags;
    t.updates++;
    t.initiatorHow.push(u.initiatorHow);
  };

  /** Flows on `ifname` matching a conntrack entry's tuple, in either orientation. */
  find(ifname: string, e: ConntrackEntry): FlowTotals[] {
    const proto = PROTO[e.proto];
    const icmp = proto === 1 || proto === 58;
    return [...this.flows.values()].filter((f) => {
      if (f.interfaceName !== ifname || f.proto !== proto) return false;
      const ips = (f.srcIp === e.src && f.dstIp === e.dst) || (f.srcIp === e.dst && f.dstIp === e.src);
      if (!ips) return false;
      if (icmp) return f.icmpId === e.icmpId;
      return (
        (f.srcPort === e.sport && f.dstPort === e.dport) || (f.srcPort === e.dport && f.dstPort === e.sport)
      );
    });
  }
}
