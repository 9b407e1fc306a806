// Policy evaluation per new connection with 1,000 policies of mixed kinds over 50
// namespaces and 10,000 pods: uncached (no trace cached; with the endpoint's policy
// selection kept, and fully cold), cached, and the memory the model adds.
//
//   node dist/bench/policy.bench.js [flows=20000] [rounds=5] [pipelineConns=50000]
//
// Policies: per namespace 12 Kubernetes NetworkPolicies (default deny, allow from a
// labelled app on a named port, endPort ranges, ipBlock with except, namespaceSelector +
// podSelector), 5 Calico NetworkPolicies in tiers `security`/`platform`/default (selector
// expressions, nets, port ranges, Pass/Deny/Allow), 1 StagedNetworkPolicy; 50 global
// policies (GNP and staged GNP) across the tiers. Flows: random pod pairs (a fifth to
// unknown IPs), ports from a small set, both directions. Figures are medians of rounds.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { type ConnectionUpdate, Hook, InitiatorHow } from '../src/datapath/types.ts';
import type { ClusterMetadata, PodMeta } from '../src/enrich/kube.ts';
import { type Endpoint, EndpointResolver } from '../src/enrich/resolver.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import type { Direction } from '../src/policy/types.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const FLOWS = Number(process.argv[2] ?? 20_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const PIPE_CONNS = Number(process.argv[4] ?? 50_000);
const NS = 50;
const PODS_PER_NS = 200;
const APPS = 10;

const namespaces = Array.from({ length: NS }, (_, i) => ({
  name: `ns${i}`,
  labels: Object.freeze({ team: `t${i % 5}`, env: i % 3 === 0 ? 'prod' : 'dev' }),
}));
const pods: PodMeta[] = [];
for (let n = 0; n < NS; n++) {
  for (let j = 0; j < PODS_PER_NS; j++) {
    const i = n * PODS_PER_NS + j;
    pods.push({
      name: `app${j % APPS}-7c9d-${j}`,
      namespace: `ns${n}`,
      generateName: `app${j % APPS}-7c9d-`,
      labels: Object.freeze({
        app: `app${j % APPS}`,
        tier: j % 2 ? 'fe' : 'be',
        ...(j % 7 === 0 ? { pci: 'true' } : {}),
      }),
      ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
      nodeName: 'node1',
      hostNetwork: false,
      containerPorts: [
        { name: 'http', port: 8080 + (j % 3), protocol: 'TCP' },
        { name: 'metrics', port: 9090, protocol: 'TCP' },
      ],
      serviceAccount: 'default',
    });
  }
}

const K8S = 'networking.k8s.io/v1';
const V3 = 'projectcalico.org/v3';
const policies: object[] = [
  { apiVersion: V3, kind: 'Tier', metadata: { name: 'security' }, spec: { order: 100 } },
  { apiVersion: V3, kind: 'Tier', metadata: { name: 'platform' }, spec: { order: 200 } },
];
for (let n = 0; n < NS; n++) {
  const ns = `ns${n}`;
  const knp = (name: string, spec: object) =>
    policies.push({ apiVersion: K8S, kind: 'NetworkPolicy', metadata: { name, namespace: ns }, spec });
  knp('default-deny', { podSelector: {}, policyTypes: ['Ingress'] });
  for (let a = 0; a < 8; a++) {
    knp(`allow-app${a}`, {
      podSelector: { matchLabels: { app: `app${a}` } },
      ingress: [
        {
          from: [
            { podSelector: { matchLabels: { app: `app${(a + 1) % APPS}` } } },
            {
              namespaceSelector: { matchLabels: { team: `t${a % 5}` } },
              podSelector: { matchLabels: { tier: 'fe' } },
            },
          ],
          ports: [{ port: 'http' }, { port: 9000, endPort: 9100 }],
        },
      ],
    });
  }
  knp('ext', {
    podSelector: { matchLabels: { tier: 'fe' } },
    ingress: [{ from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }], ports: [{ port: 443 }] }],
  });
  knp('egress-dns', {
    podSelector: { matchExpressions: [{ key: 'pci', operator: 'Exists' }] },
    policyTypes: ['Egress'],
    egress: [
      { ports: [{ port: 53, protocol: 'UDP' }] },
      { to: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }] },
    ],
  });
  knp('metrics', {
    podSelector: {},
    ingress: [
      { from: [{ namespaceSelector: { matchLabels: { team: 't0' } } }], ports: [{ port: 'metrics' }] },
    ],
  });
  const cnp = (name: string, spec: object, kind = 'NetworkPolicy') =>
    policies.push({ apiVersion: V3, kind, metadata: { name, namespace: ns }, spec });
  cnp('sec-pci', {
    tier: 'security',
    order: 10,
    selector: "pci == 'true'",
    ingress: [{ action: 'Deny', source: { notNets: ['10.0.0.0/8'] } }, { action: 'Pass' }],
  });
  cnp('sec-fe', {
    tier: 'security',
    order: 20,
    selector: "tier == 'fe' && app in {'app1', 'app3', 'app5'}",
    ingress: [{ action: 'Pass' }],
  });
  cnp('plat-be', {
    tier: 'platform',
    order: 10,
    selector: "tier == 'be' && !has(pci)",
    ingress: [
      {
        action: 'Allow',
        protocol: 'TCP',
        source: { selector: "app == 'app0'" },
        destination: { ports: ['8000:8100'] },
      },
      { action: 'Pass' },
    ],
  });
  cnp('plat-log', {
    tier: 'platform',
    order: 20,
    selector: 'all()',
    ingress: [{ action: 'Log' }, { action: 'Pass' }],
  });
  cnp('plat-metrics', {
    tier: 'platform',
    order: 30,
    selector: "app in {'app4', 'app6'}",
    ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: ['metrics'] } }],
  });
  cnp('default-np', {
    order: 500,
    selector: "app == 'app9'",
    ingress: [{ action: 'Allow', source: { namespaceSelector: "env == 'prod'" } }],
  });
  cnp(
    'staged-lock',
    {
      order: 100,
      selector: "app == 'app2'",
      ingress: [{ action: 'Deny', source: { nets: ['10.0.0.0/16'] } }],
    },
    'StagedNetworkPolicy',
  );
}
for (let g = 0; g < 50; g++) {
  const tier = g % 3 === 0 ? 'security' : g % 3 === 1 ? 'platform' : 'default';
  policies.push({
    apiVersion: V3,
    kind: g % 10 === 9 ? 'StagedGlobalNetworkPolicy' : 'GlobalNetworkPolicy',
    metadata: { name: `gnp-${g}` },
    spec: {
      tier,
      order: 1000 + g,
      selector: `has(label-${g}) || team == 'none-${g}'`,
      namespaceSelector: g % 2 ? "env == 'prod'" : '',
      ingress: [{ action: 'Deny', source: { nets: [`198.51.${g}.0/24`] } }],
    },
  });
}

const md: ClusterMetadata = {
  pods,
  services: [],
  nodes: [],
  namespaces,
  networkSets: [],
  policyObjects: policies,
};
const resolver = new EndpointResolver({
  nodeName: 'node1',
  hostEndpoints: false,
  networkSets: false,
  historyMs: 1e9,
});
resolver.update(md, 0);

// Flows: deterministic pseudo-random pairs.
// mulberry32: an LCG's low bits repeat too soon for `% n`.
let seed = 12345;
const rnd = (n: number) => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) % n;
};
const PORTS = [8080, 8081, 9090, 9050, 443, 53, 8050];
interface F {
  dir: Direction;
  src: Endpoint;
  dst: Endpoint;
  srcIp: string;
  dstIp: string;
  proto: number;
  dport: number;
}
const flows: F[] = [];
for (let k = 0; k < FLOWS; k++) {
  const a = pods[rnd(pods.length)]!;
  const b = pods[rnd(pods.length)]!;
  const ext = rnd(5) === 0 ? `203.0.${rnd(256)}.${rnd(256)}` : null;
  const dir: Direction = k % 2 ? 'ingress' : 'egress';
  const srcIp = dir === 'ingress' && ext !== null ? ext : a.ips[0]!;
  const dstIp = dir === 'egress' && ext !== null ? ext : b.ips[0]!;
  const dport = PORTS[rnd(PORTS.length)]!;
  flows.push({
    dir,
    src: resolver.resolve(srcIp, 0),
    dst: resolver.resolve(dstIp, 0),
    srcIp,
    dstIp,
    proto: dport === 53 ? 17 : 6,
    dport,
  });
}

function heap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const heap0 = heap();
const engine = new PolicyEngine({ cacheSize: 1 << 20 });
const tBuild = process.hrtime.bigint();
const warnings = engine.update(md);
const buildMs = Number(process.hrtime.bigint() - tBuild) / 1e6;
if (warnings.length > 0) throw new Error(`bench policies have warnings: ${warnings.slice(0, 3).join('; ')}`);
const heapModel = heap();

const run = (f: F) => engine.evaluate(f.dir, f.src, f.dst, f.srcIp, f.dstIp, f.proto, 40000, f.dport);
const uncachedWarm: number[] = [];
const cold: number[] = [];
const cached: number[] = [];
let hits = 0;
for (let r = 0; r < ROUNDS; r++) {
  // Fully cold: no trace and no endpoint selection cached.
  let t = process.hrtime.bigint();
  for (const f of flows) {
    engine.clearCache(false);
    hits += run(f).id;
  }
  cold.push(Number(process.hrtime.bigint() - t) / FLOWS);
  // Selections of every endpoint computed once, then no trace cached.
  for (const f of flows) run(f);
  t = process.hrtime.bigint();
  for (const f of flows) {
    engine.clearCache(true);
    hits += run(f).id;
  }
  uncachedWarm.push(Number(process.hrtime.bigint() - t) / FLOWS);
  engine.clearCache(false);
  for (const f of flows) run(f);
  t = process.hrtime.bigint();
  for (let rep = 0; rep < 5; rep++) for (const f of flows) hits += run(f).id;
  cached.push(Number(process.hrtime.bigint() - t) / (FLOWS * 5));
}
const heapCache = heap();
const staged = flows.filter((f) => run(f).pending_policies.join() !== run(f).enforced_policies.join()).length;

console.log(
  `Policy model: ${engine.model.policyCount} policies (${engine.model.stagedCount} staged), ${NS} namespaces, ${pods.length} pods; built in ${buildMs.toFixed(0)} ms`,
);
console.log(
  `${FLOWS} distinct flows, ${ROUNDS} rounds (medians); ${staged} flows with a staged policy in their trace; checksum ${hits % 1000}`,
);
console.log('');
console.log('| path | per new connection |');
console.log('|---|---|');
console.log(
  `| uncached, fully cold (endpoint's policy selection + trace) | ${(median(cold) / 1000).toFixed(2)} µs |`,
);
console.log(
  `| uncached trace (endpoint's selection kept from an earlier connection) | ${(median(uncachedWarm) / 1000).toFixed(2)} µs |`,
);
console.log(`| cached trace | ${median(cached).toFixed(0)} ns |`);
console.log('');
console.log('| memory | heap |');
console.log('|---|---|');
console.log(
  `| policy model (1,000 compiled policies + pod/namespace index) | ${((heapModel - heap0) / 1048576).toFixed(1)} MB |`,
);
console.log(
  `| plus ${engine.cachedTraces} cached traces and their endpoint views | ${((heapCache - heapModel) / 1048576).toFixed(1)} MB |`,
);

// The whole pipeline per new connection, policies on vs off: observe() of a connection's
// first update, prepareKeys() (endpoints, Service, policy trace, record key) and the
// flush's lines, at the default kinds (2 allowed). Updates are prebuilt objects (the same
// for both sides; the aggregate bench decodes ring records instead). Off and on runs
// alternate, each with a fresh aggregator and, when on, a fresh engine (cold caches).
const T0 = Date.UTC(2026, 0, 1);
function pipelineUpdates(localPods: number): ConnectionUpdate[] {
  const out: ConnectionUpdate[] = [];
  for (let k = 0; k < PIPE_CONNS; k++) {
    // Local pods spread over the namespaces (every 100th pod for a node's 100).
    const li = rnd(localPods) * Math.floor(pods.length / localPods);
    const local = pods[li]!;
    const peer = rnd(5) === 0 ? `203.0.${rnd(256)}.${rnd(256)}` : pods[rnd(pods.length)]!.ips[0]!;
    const outbound = k % 2 === 0;
    const srcIp = outbound ? local.ips[0]! : peer;
    const dstIp = outbound ? peer : local.ips[0]!;
    const srcPort = 32768 + (k % 28000);
    const dstPort = PORTS[rnd(PORTS.length)]!;
    const interfaceName = `cali${li.toString(16).padStart(11, '0')}`;
    out.push({
      key: `${interfaceName}|6|${srcIp}:${srcPort}|${dstIp}:${dstPort}|${k}`,
      ifindex: 10 + li,
      interfaceName,
      family: 4,
      proto: 6,
      srcIp,
      dstIp,
      srcPort,
      dstPort,
      icmpType: 0,
      icmpCode: 0,
      origPackets: 3,
      origBytes: 180,
      replyPackets: 2,
      replyBytes: 120,
      origTcpFlags: 0x02,
      replyTcpFlags: 0x12,
      firstSeenMs: T0 + 1000,
      lastSeenMs: T0 + 1500,
      initiatorHow: InitiatorHow.syn,
      firstHook: outbound ? Hook.ingress : Hook.egress,
      firstFromInitiator: true,
    });
  }
  return out;
}
function pipeline(
  updates: readonly ConnectionUpdate[],
  withPolicy: boolean,
): { perSecond: number; records: number } {
  gc();
  const stage = withPolicy ? new PolicyEngine({ nodeName: 'node1' }) : undefined;
  stage?.update(md);
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver,
    startTimeMs: T0,
    ...(stage ? { policy: stage } : {}),
  });
  const t = process.hrtime.bigint();
  for (const u of updates) agg.observe(u);
  agg.prepareKeys(Number.POSITIVE_INFINITY);
  let records = 0;
  for (const _ of agg.flushLineIterator(T0 + 10_000)) records++;
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  return { perSecond: PIPE_CONNS / s, records };
}
console.log('');
console.log(
  `Whole pipeline, ${PIPE_CONNS} new connections per run (observe + keys + trace + flush lines), ${ROUNDS} interleaved off/on runs, medians:`,
);
console.log('');
console.log(
  '| local pods (peers: any of the 10,000 pods, a fifth unknown IPs) | policies | new connections/s | records at kind 2 |',
);
console.log('|---|---|---|---|');
for (const localPods of [100, pods.length]) {
  const updates = pipelineUpdates(localPods);
  const off: number[] = [];
  const on: number[] = [];
  const recs = { off: 0, on: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const a = pipeline(updates, false);
    const b = pipeline(updates, true);
    off.push(a.perSecond);
    on.push(b.perSecond);
    recs.off = a.records;
    recs.on = b.records;
  }
  const what =
    localPods === pods.length ? 'every pod (worst case: few repeats)' : `${localPods} (a node's worth)`;
  console.log(`| ${what} | off (no policy stage) | ${(median(off) / 1000).toFixed(0)} k | ${recs.off} |`);
  console.log(`| ${what} | on (1,000 policies) | ${(median(on) / 1000).toFixed(0)} k | ${recs.on} |`);
}
