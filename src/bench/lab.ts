// `flowlogd bench lab`: two lab pods (network namespaces behind Calico-style veths, as
// `flowlogd demo` builds them), the standard scenarios between them, and for each one
// interleaved rounds of every variant (no program, the empty program, flowlogd, and
// with --peers pmacctd and softflowd) on the client pod's host-side veth. Kernel BPF
// run-time stats stay on for the whole run, so every variant pays their clock alike.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Lab, type Pod } from '../lab/lab.ts';
import {
  BASE_VARIANTS,
  PEER_VARIANTS,
  peerInstalled,
  type Running,
  startVariant,
  treeCpuSeconds,
  treeRssBytes,
  type Variant,
} from './collectors.ts';
import { machine } from './machine.ts';
import {
  BENCHTOOL,
  BpfStats,
  benchtoolPath,
  firstLine as firstLineOf,
  type ProgramStat,
  statDelta,
} from './native.ts';
import { Progress } from './progress.ts';
import { PORTS, pickScenarios, type Scenario } from './scenarios.ts';
import { type LabResult, labResultSchema, type ScenarioResult } from './schema.ts';
import { type RunSample, roundOrder, summarize } from './stats.ts';

export interface LabOptions {
  rounds: number;
  seconds: number;
  peers: boolean;
  scenarios?: string[];
  command: string;
  /** Extra variants: name → BPF object file whose flowlogd_in/_eg run without the daemon. */
  objects?: Record<string, string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The generator runs a little longer than the window so the window holds only steady traffic. */
const LEAD_MS = 300;
const TAIL_S = 0.4;

function packetsThrough(ifname: string): number {
  const read = (f: string) => Number(readFileSync(`/sys/class/net/${ifname}/statistics/${f}`, 'utf8'));
  return read('rx_packets') + read('tx_packets');
}

async function firstLine(child: ChildProcess, what: string): Promise<string> {
  const { line, lines } = await firstLineOf(child, what);
  lines.close();
  return line;
}

/** Per-hook names of flowlogd's programs; the empty program runs on both hooks. */
const HOOK_OF: Record<string, string> = {
  flowlogd_in: 'ingress',
  flowlogd_eg: 'egress',
  bench_empty: 'both',
};

class LabBench {
  readonly #lab = new Lab();
  readonly #stats: BpfStats;
  readonly #objects: Record<string, string>;
  client!: Pod;
  server!: Pod;

  constructor(stats: BpfStats, objects: Record<string, string>) {
    this.#stats = stats;
    this.#objects = objects;
  }

  async setUp(): Promise<void> {
    const lab = this.#lab;
    // Conntrack on in the host, as on any Kubernetes node (kube-proxy): flowlogd asks it
    // who opened a connection it first sees mid-stream.
    try {
      lab.enableConntrack();
    } catch {
      // no nft here: conntrack stays off, which only affects mid-stream starts
    }
    this.client = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-client` });
    this.server = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-server` });
    // A new connection a request leaves a TIME_WAIT per request: let connect() reuse them.
    lab.exec(this.client, 'sysctl', ['-qw', 'net.ipv4.tcp_tw_reuse=1']);
    lab.exec(this.client, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
    for (const mode of ['sink', 'serve'] as const) {
      const child = lab.spawn(this.server, BENCHTOOL, [mode, '-c', '1', String(PORTS[mode])]);
      const line = await firstLine(child, `benchtool ${mode}`);
      if (line !== 'ready') throw new Error(`benchtool ${mode}: ${line}`);
    }
  }

  async measure(scenario: Scenario, round: number, variant: Variant, seconds: number): Promise<RunSample> {
    const ifname = this.client.hostIf;
    const running: Running = await startVariant(variant, ifname, this.#objects);
    try {
      const gen = this.#lab.spawn(
        this.client,
        BENCHTOOL,
        scenario.client(
          scenario.family === 6 ? this.server.ipv6 : this.server.ipv4,
          seconds + TAIL_S + LEAD_MS / 1000,
        ),
      );
      const report = firstLine(gen, `benchtool ${scenario.client('', 0)[0]}`);
      await sleep(LEAD_MS);
      const take = async () => ({
        t: performance.now(),
        packets: packetsThrough(ifname),
        progs: await this.#stats.snapshot(),
        cpu: running.pid === null ? null : treeCpuSeconds(running.pid),
      });
      const a = await take();
      await sleep(seconds * 1000);
      const b = await take();
      const rss = running.pid === null ? null : treeRssBytes(running.pid);
      const generator = JSON.parse(await report) as RunSample['generator'];
      const elapsed = (b.t - a.t) / 1000;
      const packets = b.packets - a.packets;
      const byHook: Record<string, number> = {};
      const ids = running.programIds.filter(
        (id) => HOOK_OF[b.progs.find((p) => p.id === id)?.name ?? ''] !== undefined,
      );
      for (const id of ids) {
        const d = statDelta(a.progs, b.progs, [id]);
        const hook = HOOK_OF[b.progs.find((p) => p.id === id)!.name]!;
        if (d.runs > 0) byHook[hook] = d.runTimeNs / d.runs;
      }
      const all = statDelta(a.progs, b.progs, ids);
      const kernel = running.kernelCounters ? await this.#kernel(running, ids) : null;
      return {
        round,
        variant,
        pps: packets / elapsed,
        packets,
        seconds: elapsed,
        nsPerRun: ids.length && all.runs > 0 ? all.runTimeNs / all.runs : null,
        nsPerRunByHook: byHook,
        collectorCpuSeconds: a.cpu === null || b.cpu === null ? null : b.cpu - a.cpu,
        collectorRssBytes: rss,
        cacheHitRate: kernel?.hitRate ?? null,
        ...(kernel ? { kernelCounters: kernel.counters } : {}),
        generator,
      };
    } finally {
      await running.stop();
    }
  }

  /**
   * flowlogd's kernel counters over its whole life (this round), with its program runs:
   * the programs count cache hits at eviction and the addon adds the slots it merges at
   * each drain, so after the traffic stops and one drain passes, hits ÷ runs is exact.
   */
  async #kernel(
    running: Running,
    ids: number[],
  ): Promise<{ hitRate: number | null; counters: Record<string, number> }> {
    // The daemon drains every second; an --object variant has no drain (its counters
    // include the packets its cache slots still hold).
    if (running.pid !== null) await sleep(1200);
    const counters = await running.kernelCounters!();
    const progs: ProgramStat[] = await this.#stats.snapshot();
    const runs = statDelta([], progs, ids).runs;
    return {
      hitRate: runs > 0 && counters.cacheHits !== undefined ? counters.cacheHits / runs : null,
      counters: { ...counters, programRuns: runs },
    };
  }

  async tearDown(): Promise<void> {
    await this.#lab.destroy();
  }
}

/** Seconds a run of `variant` takes besides its window (start, stop, the hit-rate drain). */
function overheadSeconds(v: Variant): number {
  return v === 'flowlogd' ? 3.5 : v === 'none' ? 0.5 : v === 'empty' ? 0.6 : 2;
}

export function labVariants(peers: boolean): Variant[] {
  const variants: Variant[] = [...BASE_VARIANTS];
  if (peers) {
    const missing = PEER_VARIANTS.filter((p) => !peerInstalled(p));
    if (missing.length)
      throw new Error(
        `--peers: ${missing.join(', ')} not installed (Debian: apt-get install pmacct softflowd)`,
      );
    variants.push(...PEER_VARIANTS);
  }
  return variants;
}

export async function benchLab(o: LabOptions): Promise<LabResult> {
  if (process.getuid?.() !== 0) throw new Error('bench lab: needs root (netns, veths, BPF)');
  benchtoolPath();
  execFileSync('ip', ['-V'], { stdio: 'ignore' });
  const scenarios = pickScenarios(o.scenarios);
  const variants = [...labVariants(o.peers), ...Object.keys(o.objects ?? {})];
  const order = roundOrder(variants.length, o.rounds);
  const perRound = variants.reduce((a, v) => a + o.seconds + TAIL_S + LEAD_MS / 1000 + overheadSeconds(v), 0);
  const progress = new Progress(5 + scenarios.length * o.rounds * perRound);
  const startedAt = new Date().toISOString();
  const stats = await BpfStats.enable();
  const bench = new LabBench(stats, o.objects ?? {});
  const results: ScenarioResult[] = [];
  try {
    progress.update('building the lab');
    await bench.setUp();
    for (const [si, scenario] of scenarios.entries()) {
      const samples: RunSample[] = [];
      for (const [round, positions] of order.entries())
        for (const k of positions) {
          const variant = variants[k]!;
          progress.update(
            `scenario ${si + 1}/${scenarios.length} ${scenario.name}, round ${round + 1}/${o.rounds}, ${variant}`,
          );
          samples.push(await bench.measure(scenario, round, variant, o.seconds));
        }
      results.push({
        name: scenario.name,
        title: scenario.title,
        flows: scenario.flows,
        samples,
        summary: summarize(samples, variants),
      });
    }
  } finally {
    progress.update('cleaning up');
    await bench.tearDown();
    await stats.close();
    progress.done();
  }
  return labResultSchema.parse({
    kind: 'flowlogd-bench-lab',
    version: 1,
    command: o.command,
    startedAt,
    seconds: o.seconds,
    rounds: o.rounds,
    variants,
    machine: machine(),
    bpfStats: true,
    scenarios: results,
  });
}
