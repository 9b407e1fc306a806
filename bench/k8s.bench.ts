// Cluster metadata from the API at scale: 50,000 pods + 5,000 services + 1,000 nodes
// (+ 500 namespaces) listed and watched from the fake API server (its own process,
// bench/k8s-apiserver.ts) through the real client library and the daemon's source.
//
//   npm run bench -- k8s [-- pods=50000 services=5000 nodes=1000 churn=60000]
//
// Figures: time to first sync (every list applied and the first snapshot in the
// resolver); resident memory the source adds (after a full GC, against the same process
// before it started: the client library's code, the informers' slim caches, the
// resolver's tables); pod churn events applied per second, while a FlowAggregator in the
// same process observes and flushes flows resolved through the same resolver.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { KubeConfig } from '@kubernetes/client-node';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { Hook, InitiatorHow } from '../src/datapath/types.ts';
import { KubeMetadataSource } from '../src/enrich/k8s-source.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const arg = (k: string, d: number) =>
  Number(process.argv.find((a) => a.startsWith(`${k}=`))?.split('=')[1] ?? d);
const PODS = arg('pods', 50_000);
const SERVICES = arg('services', 5000);
const NODES = arg('nodes', 1000);
const CHURN = arg('churn', 60_000);

const mb = (b: number) => (b / 2 ** 20).toFixed(1);
function rss(): number {
  gc();
  gc();
  return process.memoryUsage().rss;
}

const ext = import.meta.url.endsWith('.js') ? '.js' : '.ts';
const child = fork(fileURLToPath(new URL(`./k8s-apiserver${ext}`, import.meta.url)), [], {
  execArgv: ext === '.ts' ? [] : [],
  stdio: 'inherit',
});
function ask<T>(msg: object, key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, T>) => {
      if (m[key] !== undefined) {
        child.off('message', on);
        resolve(m[key]);
      }
    };
    child.on('message', on);
    child.send(msg);
  });
}

const t0 = performance.now();
const { kubeconfig } = await ask<{ kubeconfig: string }>(
  { populate: { pods: PODS, services: SERVICES, nodes: NODES, namespaces: 500 } },
  'ready',
);
process.stderr.write(`k8s bench: server populated in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

// What the daemon has loaded before the source starts: the client library's modules.
const kc = new KubeConfig();
kc.loadFromString(kubeconfig);
const rss0 = rss();

const resolver = new EndpointResolver({
  nodeName: 'node-0',
  hostEndpoints: false,
  networkSets: false,
  historyMs: 600_000,
});
let updates = 0;
let updateMs = 0;
const src = new KubeMetadataSource(kc, { syncTimeoutMs: 300_000 });
const s0 = performance.now();
await src.start((md, at) => {
  const u0 = performance.now();
  resolver.update(md, at ?? Date.now());
  updateMs += performance.now() - u0;
  updates++;
});
const syncMs = performance.now() - s0;
const rss1 = rss();
const heap = process.memoryUsage().heapUsed;
const objects = Object.values(src.stats()).reduce((n, s) => n + s.objects, 0);
process.stderr.write(
  `k8s bench: synced ${objects} objects in ${(syncMs / 1000).toFixed(2)} s, +${mb(rss1 - rss0)} MB\n`,
);

// Flows at the same time: 20,000 connections between the pods, every connection one
// update every 100 ms round (200,000 updates/s offered), a flush every second.
const agg = new FlowAggregator({ nodeName: 'node-0', resolver, startTimeMs: Date.now(), kindForAllowed: 2 });
const CONNS = 20_000;
const ipOf = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
let observed = 0;
let flushedLines = 0;
let round = 0;
function feed(): void {
  const now = Date.now();
  round++;
  for (let c = 0; c < CONNS; c++) {
    const srcIp = ipOf(c % PODS);
    const dstIp = ipOf((c * 7 + 3) % PODS);
    const srcPort = 30000 + (c % 20000);
    agg.observe({
      key: `cali${c % 1000}|6|${srcIp}:${srcPort}|${dstIp}:8080`,
      ifindex: 10 + (c % 1000),
      interfaceName: `cali${c % 1000}`,
      family: 4,
      proto: 6,
      srcIp,
      dstIp,
      srcPort,
      dstPort: 8080,
      icmpType: 0,
      icmpCode: 0,
      origPackets: 2,
      origBytes: 200,
      replyPackets: 2,
      replyBytes: 400,
      origTcpFlags: round === 1 ? 0x02 : 0x10,
      replyTcpFlags: 0x10,
      firstSeenMs: now,
      lastSeenMs: now,
      initiatorHow: InitiatorHow.syn,
      firstHook: Hook.ingress,
      firstFromInitiator: true,
    });
    observed++;
  }
}
const feeder = setInterval(feed, 100);
const flusher = setInterval(() => {
  for (const _ of agg.flushLineIterator(Date.now())) flushedLines++;
}, 1000);

// Churn: the server writes CHURN pod events as fast as it can; measured from the first
// written to the last one applied in the resolver.
await new Promise((r) => setTimeout(r, 1000)); // the aggregator warm
const changes0 = src.counters.changes;
const updates0 = updates;
const updateMs0 = updateMs;
const observed0 = observed;
const c0 = performance.now();
const churned = ask<{ events: number; ms: number }>({ churn: { events: CHURN } }, 'churned');
const { events, ms: sentMs } = await churned;
while (src.counters.changes - changes0 < events) await new Promise((r) => setTimeout(r, 5));
src.flushPending();
const churnMs = performance.now() - c0;
const observedDuring = observed - observed0;
clearInterval(feeder);
clearInterval(flusher);
src.close();
child.disconnect();

const rate = events / (churnMs / 1000);
console.log(`### Kubernetes API source at cluster scale (issue 9)

${PODS.toLocaleString('en')} pods, ${SERVICES.toLocaleString('en')} services, ${NODES.toLocaleString('en')} nodes, 500 namespaces (${objects.toLocaleString('en')} objects, pods ~2.3 KB of JSON each) from the fake API server in another process, HTTPS, lists in pages of 500.

| figure | value | target |
|---|---|---|
| time to first sync (every list applied, first snapshot in the resolver) | ${(syncMs / 1000).toFixed(2)} s | |
| resident memory added by the source (after GC; heap now ${mb(heap)} MB) | ${mb(rss1 - rss0)} MB | < 100 MB |
| pod churn applied (${events.toLocaleString('en')} events, ${(churnMs / 1000).toFixed(2)} s; server wrote them in ${(sentMs / 1000).toFixed(2)} s) | ${Math.round(rate).toLocaleString('en')} events/s | ≥ 5,000/s |
| resolver snapshots during churn (coalesced 100 ms), time in resolver.update | ${updates - updates0}, ${((updateMs - updateMs0) / 1000).toFixed(2)} s | |
| flow updates observed meanwhile (${CONNS.toLocaleString('en')} connections, a flush a second) | ${Math.round(observedDuring / (churnMs / 1000)).toLocaleString('en')} /s, ${flushedLines.toLocaleString('en')} lines | |
`);
process.exit(0);
