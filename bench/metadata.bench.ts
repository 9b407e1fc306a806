// Metadata file load (issue 14 item 4): a generated List of N pods (kubectl's shape, the
// fields a Deployment's pod carries that flowlogd reads, plus a few it does not) loaded
// the way the daemon loads it (FileMetadataSource: a worker thread, slim objects back)
// and, for comparison, parsed in place on the main thread. Each case runs in its own
// process so one's memory never colours another's.
//
//   npm run bench -- metadata [--pods 180000] [--formats yaml,json] [--modes worker,inplace]
//
// Per case: file size, resident memory before the load, the process's peak (getrusage
// maxRSS, worker included), resident memory after the load and a GC (what is kept), the
// event loop's longest delay while loading (monitorEventLoopDelay, 10 ms resolution),
// the load's wall time, and the resolver update that follows (on the main thread).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { ClusterMetadata } from '../src/enrich/kube.ts';
import { parseClusterMetadata } from '../src/enrich/kube.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';
import { FileMetadataSource } from '../src/enrich/source.ts';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '180000' },
    formats: { type: 'string', default: 'yaml,json' },
    modes: { type: 'string', default: 'worker,inplace' },
    child: { type: 'string' },
  },
});

const MB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function podList(n: number): object {
  const items = [];
  for (let i = 0; i < n; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const hash = (i % 4096).toString(16).padStart(3, '0');
    items.push({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `web-7d9f8b6${hash}-${i.toString(36).padStart(5, '0')}`,
        namespace: `ns-${i % 200}`,
        generateName: `web-7d9f8b6${hash}-`,
        labels: { app: 'web', 'pod-template-hash': `7d9f8b6${hash}` },
        uid: `0000-${i}`,
      },
      spec: { nodeName: `node-${i % 500}`, serviceAccountName: 'default' },
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    });
  }
  return { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
}

interface Result {
  readonly rssBeforeMb: number;
  readonly peakRssMb: number;
  readonly rssAfterMb: number;
  readonly loopMaxMs: number;
  readonly loadMs: number;
  readonly updateMs: number;
  readonly pods: number;
}

async function child(path: string, mode: string): Promise<Result> {
  gc();
  const rssBefore = process.memoryUsage().rss;
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const t0 = performance.now();
  let md: ClusterMetadata;
  if (mode === 'worker') {
    let got: ClusterMetadata | null = null;
    const src = new FileMetadataSource(path, { pollMs: 0, watch: false });
    await src.start((m) => {
      got = m;
    });
    src.close();
    md = got!;
  } else {
    await new Promise((r) => setTimeout(r, 20)); // let the monitor see a normal loop first
    md = parseClusterMetadata(readFileSync(path, 'utf8'), path).metadata;
  }
  const loadMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 20)); // the monitor records the last delay
  h.disable();
  const resolver = new EndpointResolver({
    nodeName: 'n',
    hostEndpoints: false,
    networkSets: false,
    historyMs: 600_000,
  });
  const t1 = performance.now();
  resolver.update(md, Date.now());
  const updateMs = performance.now() - t1;
  gc();
  return {
    rssBeforeMb: rssBefore / MB,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    rssAfterMb: process.memoryUsage().rss / MB,
    loopMaxMs: h.max / 1e6,
    loadMs,
    updateMs,
    pods: md.pods.length,
  };
}

if (values.child !== undefined) {
  const [path, mode] = values.child.split('|') as [string, string];
  process.stdout.write(JSON.stringify(await child(path, mode)));
} else {
  const n = Number(values.pods);
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-mdbench-'));
  try {
    const list = podList(n);
    const files: Record<string, string> = {};
    for (const f of values.formats.split(',')) {
      files[f] = join(dir, `pods.${f}`);
      writeFileSync(files[f]!, f === 'json' ? JSON.stringify(list, null, 2) : stringify(list));
    }
    const self = fileURLToPath(import.meta.url);
    const rows: string[] = [];
    for (const [format, path] of Object.entries(files)) {
      for (const mode of values.modes.split(',')) {
        const r = spawnSync(process.execPath, [...process.execArgv, self, '--child', `${path}|${mode}`], {
          encoding: 'utf8',
          maxBuffer: 1 << 20,
        });
        if (r.status !== 0) throw new Error(`${format} ${mode}: ${r.stderr}`);
        const x = JSON.parse(r.stdout) as Result;
        if (x.pods !== n) throw new Error(`${format} ${mode}: ${x.pods} pods, expected ${n}`);
        const f1 = (v: number) => v.toFixed(0);
        rows.push(
          `| ${format} | ${(statSync(path).size / MB).toFixed(1)} | ${mode} | ${f1(x.rssBeforeMb)} | ${f1(x.peakRssMb)} | ${f1(x.rssAfterMb)} | ${f1(x.loopMaxMs)} | ${f1(x.loadMs)} | ${f1(x.updateMs)} |`,
        );
        process.stderr.write(`${rows[rows.length - 1]}\n`);
      }
    }
    console.log(`\nMetadata load, ${n} pods (node ${process.version})\n`);
    console.log(
      '| format | file MB | parsed | RSS before MB | peak RSS MB | RSS after MB | event loop max ms | load ms | resolver update ms |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) console.log(r);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
