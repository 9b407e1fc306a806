// The whole daemon with N real, active connections (issue 3's memory and flush figures on
// the real thing, not the hot path alone): a lab pod sends one datagram on each of N UDP
// 5-tuples to a peer off the node every 4 s, so each stays an active connection that the
// kernel counts and conntrack tracks; `bin/flowlogd run` (compiled, as shipped) watches
// the pod's veth with a metadata file, flushing every 5 s. Read from the daemon: resident
// memory from /proc (anonymous and file-backed) idle, after four flushes, then sampled
// every 250 ms for 20 s (median and range); peak; flush durations from its debug log; records per flush.
// Needs root. Usage: node dist/bench/daemon.bench.js [--flows N] [--kinds 0,1,2,3]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cli } from '../src/lab/args.ts';
import { Cluster } from '../src/lab/cluster.ts';
import { Flowlogd, until } from '../src/lab/flowlogd.ts';
import { Lab } from '../src/lab/lab.ts';

const { values } = parseArgs({
  options: {
    flows: { type: 'string', default: '100000' },
    kinds: { type: 'string', default: '0,1,2,3' },
  },
});
const FLOWS = Number(values.flows);
const KINDS = values.kinds.split(',').map(Number);
const FLUSH_S = 5;
const PORT = 10000;

interface Mem {
  rss: number;
  anon: number;
  file: number;
  peak: number;
}
function memOf(pid: number): Mem {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? Number.NaN);
  return {
    rss: kb('VmRSS') / 1024,
    anon: kb('RssAnon') / 1024,
    file: kb('RssFile') / 1024,
    peak: kb('VmHWM') / 1024,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runKind(kind: number) {
  const lab = new Lab();
  let d: Flowlogd | null = null;
  let metadataDir = '';
  try {
    lab.enableConntrack();
    // Conntrack keeps a UDP entry 30 s after its last packet, beyond the 4 s resend period.
    lab.setHostSysctl('net.netfilter.nf_conntrack_max', String(Math.max(262144, FLOWS * 2)));
    const cluster = new Cluster(lab, 'bench-node');
    const pod = cluster.addReplicaSet('bench', 'sender', 'fe', 1).pods[0]!;
    const peer = lab.addPod({ namespace: '-', name: `${lab.prefix}-peer` }, { remote: true });
    // The peer drops the datagrams silently (no ICMP port unreachable coming back).
    lab.exec(peer, 'nft', [
      'add table inet sink; add chain inet sink in { type filter hook input priority 0; udp dport 1-65535 drop; }',
    ]);
    metadataDir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-'));
    const metadata = join(metadataDir, 'metadata.yaml');
    cluster.writeMetadata(metadata);

    d = new Flowlogd(
      cli(null, {
        metadata,
        interfaces: pod.hostIf,
        nodeName: 'bench-node',
        flowLogsFlushInterval: `${FLUSH_S}s`,
        flowLogsFileAggregationKindForAllowed: kind,
        flowLogsFileMaxFileSizeMb: 1000,
      }),
    );
    await d.started;
    const pid = d.child.pid!; // bin/flowlogd execs node: the same process
    await sleep(2000);
    const idle = memOf(pid);

    // Resolves once the first round of datagrams is out; the sender goes on until stdin ends.
    const { child: spray } = await lab.traffic(
      pod,
      cli('spray', { host: peer.ipv4, port: PORT, flows: FLOWS, every: 4 }),
      { keep: true },
    );
    const flushesBefore = d.flushes;
    // Four flushes with every connection active, then 20 s more while they stay active
    // (the daemon runs a memory-reducing GC after each flush).
    await until('four flushes', () => d!.flushes >= flushesBefore + 4, 60_000);
    const afterFlushes = memOf(pid);
    // RSS rises with each flush's garbage and falls at its GC: sampled every 250 ms.
    const samples: Mem[] = [];
    for (let t = 0; t < 20_000; t += 250) {
      await sleep(250);
      samples.push(memOf(pid));
    }
    const byRss = [...samples].sort((x, y) => x.rss - y.rss);
    const settled = byRss[Math.floor(byRss.length / 2)]!;
    const range = [byRss[0]!.rss, byRss.at(-1)!.rss];
    spray.stdin?.end();
    const flushMs = [...d.stderr.matchAll(/"ms":(\d+),"msg":"flushed"/g)].map((m) => Number(m[1]));
    const recordsPerFlush = [...d.stderr.matchAll(/"records":(\d+),[^}]*"msg":"flushed"/g)].map((m) =>
      Number(m[1]),
    );
    const heap = [...d.stderr.matchAll(/"heapMB":(\d+),"externalMB":(\d+)[^}]*"msg":"flushed"/g)].map(
      (m) => `${m[1]}+${m[2]}`,
    );
    console.error('heap+external per flush', heap.join(' '));
    return { kind, idle, afterFlushes, settled, range, flushMs, recordsPerFlush };
  } finally {
    await d?.stop();
    if (d) rmSync(d.dir, { recursive: true, force: true });
    if (metadataDir) rmSync(metadataDir, { recursive: true, force: true });
    await lab.destroy();
  }
}

const rows = [];
for (const k of KINDS) rows.push(await runKind(k));
const f = (n: number) => n.toFixed(0);
console.log(
  `\nflowlogd daemon bench — ${FLOWS} active UDP connections on one pod veth, flush every ${FLUSH_S} s, node ${process.version}\n`,
);
console.log(
  '| kind | RSS idle MB (anon + file) | RSS after 4 flushes MB | RSS over the next 20 s, median (anon + file) | its range | peak RSS MB | records per flush (last) | flush ms (each, after start) |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.kind} | ${f(r.idle.rss)} (${f(r.idle.anon)} + ${f(r.idle.file)}) | ${f(r.afterFlushes.rss)} | ${f(r.settled.rss)} (${f(r.settled.anon)} + ${f(r.settled.file)}) | ${f(r.range[0]!)}–${f(r.range[1]!)} | ${f(r.settled.peak)} | ${r.recordsPerFlush.at(-1)} | ${r.flushMs.join(', ')} |`,
  );
}
