// Datapath benchmarks (issue 2), printed as Markdown for BENCHMARKS.md:
//   1. the TC program's own cost per packet (kernel BPF stats: run time / run count)
//      on real veth traffic, small UDP packets;
//   2. packets/s through a veth pair with flowlogd attached / without, interleaved runs,
//      medians;
//   3. drain rate of a map holding 100k connections;
//   4. shared hash + atomics vs per-CPU hash, by BPF_PROG_TEST_RUN on one and two CPUs.
// Needs root. Usage: node bench/datapath.bench.ts [--runs N] [--seconds S]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { projectPath } from '../src/common/paths.ts';
import { FlowDatapath } from '../src/datapath/datapath.ts';
import { attachForeignProgram, Lab, run } from '../src/lab/lab.ts';
import { ether, ipv4, udp } from '../src/lab/packets.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    seconds: { type: 'string', default: '3' },
    // Which parts: cost (per packet) and throughput run together; hooks (an empty program's
    // throughput cost, not by default); drain; variants.
    parts: { type: 'string', default: 'cost,drain,variants' },
    // Record ring for the drain (records); the daemon's default when not given.
    ring: { type: 'string' },
  },
});
const PARTS = new Set(values.parts.split(','));
const RUNS = Number(values.runs);
const SECONDS = Number(values.seconds);
const OUT = `${projectPath('bpf', '.output')}/`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (n: number, d = 1) =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

interface ProgStats {
  run_time_ns: number;
  run_cnt: number;
}
function progStats(id: number): ProgStats {
  const j = JSON.parse(
    execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { encoding: 'utf8' }),
  );
  return { run_time_ns: j.run_time_ns ?? 0, run_cnt: j.run_cnt ?? 0 };
}

/** UDP 64-byte payloads as fast as iperf3 sends them; returns received packets/s. */
async function udpBlast(lab: Lab, client: ReturnType<Lab['addPod']>, server: ReturnType<Lab['addPod']>) {
  // Pinned (sender on CPU 0, receiver on CPU 1): unpinned, the scheduler's placement made
  // runs bimodal (360k or 520k pps) and medians of a handful of runs meaningless.
  const srv = lab.spawn(server, 'iperf3', ['-s', '-1', '-p', '5201', '-A', '1']);
  await new Promise((r) => setTimeout(r, 300));
  const out = lab.exec(client, 'iperf3', [
    '-u',
    '-c',
    server.ipv4,
    '-p',
    '5201',
    '-b',
    '0',
    '-l',
    '64',
    '-t',
    String(SECONDS),
    '-A',
    '0',
    '-J',
  ]);
  await new Promise((r) => (srv.exitCode !== null ? r(null) : srv.once('exit', r)));
  const j = JSON.parse(out);
  const sum = j.end.sum;
  return (sum.packets - sum.lost_packets) / sum.seconds;
}

async function perPacketAndThroughput(lines: string[]) {
  const lab = new Lab();
  const savedStats = run('sysctl', ['-n', 'kernel.bpf_stats_enabled']).trim();
  run('sysctl', ['-qw', 'kernel.bpf_stats_enabled=1']);
  try {
    const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-bench-c` });
    const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-bench-s` });
    const withRates: number[] = [];
    const withoutRates: number[] = [];
    const nsPerPacket: number[] = [];
    const nsEmpty: number[] = [];
    // Baseline: an empty TC program (returns "next") under the same BPF stats. Its
    // "run time" is what the stats' own clock reads and the call cost add to any program.
    const emptyIds = attachForeignProgram(client.hostIf);
    for (let i = 0; i < Math.min(RUNS, 3); i++) {
      const before = emptyIds.map(progStats);
      await udpBlast(lab, client, server);
      const after = emptyIds.map(progStats);
      const ns = after.reduce((a, s, k) => a + s.run_time_ns - before[k]!.run_time_ns, 0);
      const cnt = after.reduce((a, s, k) => a + s.run_cnt - before[k]!.run_cnt, 0);
      nsEmpty.push(ns / cnt);
    }
    run('tc', ['qdisc', 'del', 'dev', client.hostIf, 'clsact']);
    // Program cost: BPF stats on.
    for (let i = 0; i < RUNS; i++) {
      const dp = new FlowDatapath({ interfaces: [client.hostIf, server.hostIf] }, () => {});
      const ids = dp.progIds();
      const before = ids.map(progStats);
      await udpBlast(lab, client, server);
      const after = ids.map(progStats);
      const ns = after.reduce((a, s, k) => a + s.run_time_ns - before[k]!.run_time_ns, 0);
      const cnt = after.reduce((a, s, k) => a + s.run_cnt - before[k]!.run_cnt, 0);
      nsPerPacket.push(ns / cnt);
      await dp.stop();
      dp.close();
    }
    // Throughput: BPF stats off (their clock reads would be charged to "with" only).
    run('sysctl', ['-qw', 'kernel.bpf_stats_enabled=0']);
    for (let i = 0; i < RUNS; i++) {
      // Interleaved: without, then with, so drift hits both alike.
      withoutRates.push(await udpBlast(lab, client, server));
      const dp = new FlowDatapath({ interfaces: [client.hostIf, server.hostIf] }, () => {});
      withRates.push(await udpBlast(lab, client, server));
      await dp.stop();
      dp.close();
    }
    const ratio = median(withRates) / median(withoutRates);
    // Each "with" run against the "without" run just before it: robust to the VM's mode
    // switches between pairs, which shift medians of a handful of runs.
    const pairRatios = withRates.map((w, i) => w / withoutRates[i]!);
    lines.push('### 1. Program cost per packet (kernel BPF stats)', '');
    lines.push(
      `Small UDP (64-byte payload) from iperf3 through two lab veths, ${RUNS} runs of ${SECONDS} s.`,
      '',
    );
    lines.push('| program | runs (ns per run) | median |', '|---|---|---|');
    lines.push(
      `| flowlogd (tcx, both hooks) | ${nsPerPacket.map((x) => fmt(x)).join(', ')} | **${fmt(median(nsPerPacket))} ns** |`,
    );
    lines.push(
      `| empty program (clsact, returns at once) | ${nsEmpty.map((x) => fmt(x)).join(', ')} | ${fmt(median(nsEmpty))} ns |`,
    );
    lines.push(
      `| flowlogd minus the empty program's floor | | **${fmt(median(nsPerPacket) - median(nsEmpty))} ns** |`,
      '',
    );
    lines.push('### 2. Packets per second through a veth pair, with / without flowlogd', '');
    lines.push(
      `iperf3 UDP, 64-byte payloads, client pod (CPU 0) -> host -> server pod (CPU 1), flowlogd on both veths, BPF stats off,`,
      `${RUNS} interleaved runs of ${SECONDS} s each; received packets/s.`,
      '',
    );
    lines.push('| | median pps | runs |', '|---|---|---|');
    lines.push(
      `| without | ${fmt(median(withoutRates), 0)} | ${withoutRates.map((x) => fmt(x, 0)).join(', ')} |`,
    );
    lines.push(`| with | ${fmt(median(withRates), 0)} | ${withRates.map((x) => fmt(x, 0)).join(', ')} |`);
    lines.push(`| **ratio of medians** | **${fmt(ratio, 3)}** | |`);
    lines.push(
      `| **median of pair ratios** | **${fmt(median(pairRatios), 3)}** | ${pairRatios.map((x) => fmt(x, 3)).join(', ')} |`,
      '',
    );
  } finally {
    run('sysctl', ['-qw', `kernel.bpf_stats_enabled=${savedStats}`]);
    await lab.destroy();
  }
}

/**
 * What a TC hook costs by itself: interleaved runs without any program, with an empty
 * program (returns "next") on both veths' ingress and egress, and with flowlogd.
 */
async function hookCost(lines: string[]) {
  const lab = new Lab();
  try {
    const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-hook-c` });
    const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-hook-s` });
    const without: number[] = [];
    const emptyTcx: number[] = [];
    const flowlogdTcx: number[] = [];
    const devs = [client.hostIf, server.hostIf];
    for (let i = 0; i < RUNS; i++) {
      without.push(await udpBlast(lab, client, server));
      const holder = spawn(`${OUT}benchtool`, ['empty', ...devs], { stdio: ['pipe', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`benchtool empty exited with ${code}`)));
      });
      emptyTcx.push(await udpBlast(lab, client, server));
      holder.stdin.end();
      await new Promise((r) => (holder.exitCode !== null ? r(null) : holder.once('exit', r)));
      const dp = new FlowDatapath({ interfaces: devs, attachMode: 'tcx' }, () => {});
      flowlogdTcx.push(await udpBlast(lab, client, server));
      await dp.stop();
      dp.close();
    }
    const pairs = (xs: number[]) => median(xs.map((x, k) => x / without[k]!));
    lines.push('### 2b. The hook alone: an empty tcx program against flowlogd', '');
    lines.push(
      `Same traffic as §2, ${RUNS} interleaved rounds (without; an empty program, tcx; flowlogd, tcx), each on`,
      'both veths, ingress and egress; received packets/s, and the median of each run over the "without" run of',
      'its round.',
      '',
    );
    lines.push('| | median pps | median ratio to without | runs |', '|---|---|---|---|');
    for (const [name, xs] of [
      ['without', without],
      ['empty program (returns at once), tcx', emptyTcx],
      ['flowlogd, tcx', flowlogdTcx],
    ] as const)
      lines.push(
        `| ${name} | ${fmt(median(xs), 0)} | ${fmt(pairs(xs), 3)} | ${xs.map((x) => fmt(x, 0)).join(', ')} |`,
      );
    lines.push('');
  } finally {
    await lab.destroy();
  }
}

/** 100k distinct UDP connections put into the map by test runs, then drained. */
async function drainRate(lines: string[]) {
  const N = 100_000;
  let received = 0;
  const dp = new FlowDatapath(
    {
      interfaces: ['flowlogd-none'],
      maxFlows: 131072,
      drainIntervalMs: 60000,
      ...(values.ring ? { ringRecords: Number(values.ring) } : {}),
    },
    () => {
      received++;
    },
  );
  const frames: Uint8Array[] = [];
  for (let i = 0; i < N; i++) {
    const src = [10, 1, (i >> 8) & 0xff, i & 0xff];
    frames.push(ether(0x0800, ipv4(17, src, [10, 2, 0, 1], udp(10000 + (i % 50000), 53, 8))));
  }
  const mapRates: number[] = [];
  const endToEnd: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    await dp.sync();
    for (const f of frames) dp.testRun(f, true);
    received = 0;
    const ns0 = dp.stats().drainNs;
    const t0 = performance.now();
    await dp.sync();
    const ms = performance.now() - t0;
    const mapNs = dp.stats().drainNs - ns0;
    if (received !== N) throw new Error(`drained ${received} of ${N}`);
    mapRates.push(N / (mapNs / 1e9));
    endToEnd.push(N / (ms / 1000));
  }
  await dp.stop();
  dp.close();
  lines.push('### 3. Drain rate, 100k connections', '');
  lines.push(
    'Kernel map read with `BPF_MAP_LOOKUP_AND_DELETE_BATCH` (8192 a batch) on the addon thread, and the whole',
    'sync: generation flip, RCU grace period, batched read, ring, DataView decode in JavaScript.',
    '',
  );
  lines.push('| | median entries/s | runs |', '|---|---|---|');
  lines.push(
    `| map read (batched lookup-and-delete) | **${fmt(median(mapRates) / 1e6, 2)} M/s** | ${mapRates.map((x) => fmt(x / 1e6, 2)).join(', ')} |`,
  );
  lines.push(
    `| whole sync to JavaScript | ${fmt(median(endToEnd) / 1e6, 2)} M/s | ${endToEnd.map((x) => fmt(x / 1e6, 2)).join(', ')} |`,
    '',
  );
}

/** ns per run of BPF_PROG_TEST_RUN (repeat) on one CPU, and on two CPUs at once hitting one entry. */
async function variants(lines: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-'));
  const pkt = join(dir, 'pkt.bin');
  writeFileSync(pkt, ether(0x0800, ipv4(17, [10, 9, 0, 1], [10, 9, 0, 2], udp(40000, 53, 22))));
  const rows: string[] = [];
  try {
    for (const [name, obj] of [
      ['shared hash, atomic adds, per-CPU cache (shipped)', 'flow_tc.bpf.o'],
      ['shared hash, atomic adds, no cache', 'flow_tc_nocache.bpf.o'],
      ['per-CPU hash, plain adds, per-CPU cache', 'flow_tc_percpu.bpf.o'],
    ] as const) {
      const pin = `/sys/fs/bpf/flowlogd-bench-${process.pid}-${obj.replace(/\W/g, '')}`;
      run('bpftool', ['prog', 'loadall', join(OUT, obj), pin]);
      try {
        const prog = `${pin}/flowlogd_eg`;
        const once = (cpu: number) =>
          new Promise<number>((resolve, reject) => {
            const p = spawn('taskset', [
              '-c',
              String(cpu),
              'bpftool',
              'prog',
              'run',
              'pinned',
              prog,
              'data_in',
              pkt,
              'repeat',
              '5000000',
            ]);
            let out = '';
            p.stdout.on('data', (c) => (out += c));
            let err = '';
            p.stderr.on('data', (c) => (err += c));
            p.on('exit', () => {
              const m = /duration \(average\): (\d+)ns/.exec(out);
              m ? resolve(Number(m[1])) : reject(new Error(`bpftool prog run ${prog}: ${out}${err}`));
            });
          });
        const single: number[] = [];
        const dual: number[] = [];
        for (let r = 0; r < RUNS; r++) {
          single.push(await once(0));
          const [a, b] = await Promise.all([once(0), once(1)]);
          dual.push((a! + b!) / 2);
        }
        rows.push(`| ${name} | ${median(single)} ns | ${median(dual)} ns |`);
      } finally {
        rmSync(pin, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  lines.push('### 4. Shared map with atomics vs per-CPU map', '');
  lines.push(
    'One existing connection updated in a loop by `bpftool prog run ... repeat 5000000` (parse + lookup +',
    'update), on one CPU, and on both CPUs at once (the same entry: both directions of one busy',
    'connection landing on different CPUs). Medians of the runs.',
    '',
  );
  lines.push('| variant | one CPU | two CPUs, same entry |', '|---|---|---|', ...rows, '');
}

const lines: string[] = [];
const cpu = execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], {
  encoding: 'utf8',
}).trim();
lines.push(
  `## Datapath (${new Date().toISOString().slice(0, 10)}, Linux ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, ${cpu}, 2 vCPU)`,
  '',
  `Command: \`npm run bench -- datapath\` (\`node bench/datapath.bench.ts --runs ${RUNS} --seconds ${SECONDS}\`)`,
  '',
);
// Each part's Markdown is printed when the part ends: a later part's failure keeps it.
const parts: [string, (lines: string[]) => Promise<void>][] = [
  ['cost', perPacketAndThroughput],
  ['hooks', hookCost],
  ['drain', drainRate],
  ['variants', variants],
];
const unknown = [...PARTS].filter((p) => !parts.some(([name]) => name === p));
if (unknown.length)
  throw new Error(`--parts: no part ${unknown.join(', ')}; have ${parts.map(([n]) => n).join(', ')}`);
const flush = () => process.stdout.write(`${lines.splice(0).join('\n')}\n`);
for (const [name, part] of parts) {
  if (!PARTS.has(name)) continue;
  await part(lines);
  flush();
}
