// `flowlogd bench live`: what the programs already running on this node cost under its
// own traffic. Kernel BPF run-time stats go on for the window (a BPF_ENABLE_STATS fd:
// when it closes the kernel's setting is what it was) and the daemons holding the
// programs are found by their fds, so it runs beside a daemon without touching it.
import { machine } from './machine.ts';
import { BpfStats, statDelta } from './native.ts';
import { cpuSeconds, memory, ownersOf } from './proc.ts';
import { Progress } from './progress.ts';
import { type LiveResult, liveResultSchema } from './schema.ts';

const HOOKS: Record<string, string> = {
  flowlogd_in: 'tc ingress',
  flowlogd_eg: 'tc egress',
  flowlogd_drop: 'kfree_skb',
};

export interface LiveOptions {
  seconds: number;
  /** Every loaded program, not only flowlogd's. */
  all: boolean;
}

export async function benchLive(o: LiveOptions): Promise<LiveResult> {
  if (process.getuid?.() !== 0)
    throw new Error('bench live: needs root (CAP_BPF or CAP_SYS_ADMIN) for BPF stats');
  const startedAt = new Date().toISOString();
  const progress = new Progress(o.seconds);
  const stats = await BpfStats.enable();
  try {
    const before = await stats.snapshot();
    const mine = before.filter((p) => o.all || p.name.startsWith('flowlogd'));
    if (mine.length === 0)
      throw new Error(
        'bench live: no flowlogd program is loaded here: is `flowlogd run` running on this node?',
      );
    const owners = ownersOf(mine.map((p) => p.id));
    const daemonPids = [...owners.keys()].sort((a, b) => a - b);
    const cpu0 = new Map(daemonPids.map((pid) => [pid, cpuSeconds(pid)]));
    const t0 = performance.now();
    const end = t0 + o.seconds * 1000;
    while (performance.now() < end) {
      progress.update(`BPF stats on, ${mine.length} program(s), ${daemonPids.length} daemon(s)`);
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, end - performance.now()))));
    }
    const after = await stats.snapshot();
    const seconds = (performance.now() - t0) / 1000;
    progress.done();
    const programs = mine.map((p) => {
      const d = statDelta(before, after, [p.id]);
      return {
        id: p.id,
        name: p.name,
        hook: HOOKS[p.name] ?? `type ${p.type}`,
        runs: d.runs,
        runTimeNs: d.runTimeNs,
        nsPerRun: d.runs > 0 ? d.runTimeNs / d.runs : null,
        packetsPerSecond: d.runs / seconds,
        coreShare: d.runTimeNs / (seconds * 1e9),
        owners: [...owners].filter(([, ids]) => ids.includes(p.id)).map(([pid]) => pid),
      };
    });
    const runs = programs.reduce((a, p) => a + p.runs, 0);
    const runTimeNs = programs.reduce((a, p) => a + p.runTimeNs, 0);
    const daemons = daemonPids.flatMap((pid) => {
      const c0 = cpu0.get(pid);
      const c1 = cpuSeconds(pid);
      const m = memory(pid);
      if (c0 === null || c0 === undefined || c1 === null || m === null) return [];
      return [
        {
          pid,
          cpuSeconds: c1 - c0,
          coreShare: (c1 - c0) / seconds,
          rssBytes: m.rssBytes,
          rssAnonBytes: m.rssAnonBytes,
          rssFileBytes: m.rssFileBytes,
        },
      ];
    });
    return liveResultSchema.parse({
      kind: 'flowlogd-bench-live',
      version: 1,
      startedAt,
      seconds,
      machine: machine(),
      programs,
      total: {
        runs,
        nsPerRun: runs > 0 ? runTimeNs / runs : null,
        packetsPerSecond: runs / seconds,
        coreShare: runTimeNs / (seconds * 1e9),
      },
      daemons,
    });
  } finally {
    progress.done();
    await stats.close();
  }
}
