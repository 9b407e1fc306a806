import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeMetadataSource } from '../../../src/enrich/k8s-source.ts';
import type { ClusterMetadata } from '../../../src/enrich/kube.ts';
import { EndpointResolver } from '../../../src/enrich/resolver.ts';
import type { Logger } from '../../../src/enrich/source.ts';
import { FakeApiServer } from '../../../src/lab/fake-apiserver.ts';

const PODS = '/api/v1/pods';
const SERVICES = '/api/v1/services';
const NAMESPACES = '/api/v1/namespaces';
const NODES = '/api/v1/nodes';
const NETSETS_V3 = '/apis/projectcalico.org/v3/networksets';

let api: FakeApiServer;

before(async () => {
  api = await FakeApiServer.start();
});
after(() => api.close());

function pod(name: string, ip: string, labels: Record<string, string> = {}) {
  return {
    metadata: { name, namespace: 'web', generateName: null, labels },
    spec: { nodeName: 'node-1' },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
}

function recorder() {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const rec =
    (level: string) =>
    (obj: object, msg = '') =>
      lines.push({ level, msg, obj: obj as Record<string, unknown> });
  const logger: Logger = { info: rec('info'), warn: rec('warn'), error: rec('error') };
  return { logger, lines };
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every core collection has a watch open that this test's source started. */
function watching(): Promise<void> {
  const core = [PODS, SERVICES, NAMESPACES, NODES];
  return waitFor('watches', () =>
    core.every(
      (p) =>
        api.openWatchesOn(p) >= 1 && api.requests.some((r) => r.path === p && r.watch && r.status === 200),
    ),
  );
}

function kubeConfig(token?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig(token));
  return kc;
}

/** A fresh server state per test: the collections below, nothing in them. */
async function reset(): Promise<void> {
  // Requests a closed source had in flight land here before the record is cleared.
  await new Promise((r) => setTimeout(r, 50));
  for (const p of [PODS, SERVICES, NAMESPACES, NODES, NETSETS_V3]) api.unserve(p);
  for (const [p, k] of [
    [PODS, 'Pod'],
    [SERVICES, 'Service'],
    [NAMESPACES, 'Namespace'],
    [NODES, 'Node'],
  ] as const)
    api.serve(p, 'v1', k);
  api.requests.length = 0;
  api.unavailable = false;
  api.expiredAs = 'event';
}

function start(opts: { token?: string; syncTimeoutMs?: number } = {}) {
  const { logger, lines } = recorder();
  const seen: ClusterMetadata[] = [];
  const src = new KubeMetadataSource(kubeConfig(opts.token), {
    logger,
    coalesceMs: 5,
    syncTimeoutMs: opts.syncTimeoutMs ?? 5000,
    informer: { backoffMs: [20, 100], pageSize: 2, random: () => 0.5 },
  });
  const podNames = () => (seen.at(-1)?.pods ?? []).map((p) => p.name).sort();
  return { src, seen, lines, podNames, started: src.start((md) => seen.push(md)) };
}

test('API source: first list in pages, then add, modify and delete from the watch', async () => {
  await reset();
  api.put(PODS, pod('a', '10.1.0.1'));
  api.put(PODS, pod('b', '10.1.0.2'));
  api.put(PODS, pod('c', '10.1.0.3'));
  api.put(NAMESPACES, { metadata: { name: 'web', labels: { team: 'x' } } });
  api.put(SERVICES, {
    metadata: { name: 'nginx', namespace: 'web' },
    spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
  });
  api.put(NODES, {
    metadata: { name: 'node-1', labels: { zone: 'a' } },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }] },
  });
  const { src, seen, lines, podNames, started } = start();
  await started;
  try {
    assert.equal(src.synced, true);
    assert.equal(seen.length, 1);
    assert.deepEqual(podNames(), ['a', 'b', 'c']);
    const first = seen[0]!;
    assert.deepEqual(first.services, [
      {
        name: 'nginx',
        namespace: 'web',
        clusterIps: ['10.96.0.10'],
        ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
      },
    ]);
    assert.deepEqual(first.nodes, [{ name: 'node-1', labels: { zone: 'a' }, ips: ['192.168.1.10'] }]);
    assert.deepEqual(first.namespaces, [{ name: 'web', labels: { team: 'x' } }]);
    // 3 pods at 2 a page: two list requests, the second with a continue token.
    assert.equal(api.requests.filter((r) => r.path === PODS && !r.watch).length, 2);
    // Calico sets not served in either API group: 404 on both paths, logged once each.
    const notServed = lines.filter((l) => l.msg.includes('not served'));
    assert.deepEqual(notServed.map((l) => l.obj.resource).sort(), ['globalnetworksets', 'networksets']);
    assert.equal(api.requests.filter((r) => r.path.endsWith('/networksets') && r.status === 404).length, 2);

    await watching();
    api.put(PODS, pod('d', '10.1.0.4'));
    await waitFor('pod d', () => podNames().includes('d'));
    api.put(PODS, pod('a', '10.1.0.1', { app: 'new' }));
    await waitFor(
      'pod a relabelled',
      () => seen.at(-1)!.pods.find((p) => p.name === 'a')!.labels.app === 'new',
    );
    api.remove(PODS, 'web', 'b');
    await waitFor('pod b gone', () => !podNames().includes('b'));
    assert.deepEqual(podNames(), ['a', 'c', 'd']);
    // The watch resumed nothing and relisted nothing: one list (2 pages), one watch.
    assert.equal(api.requests.filter((r) => r.path === PODS).length, 3);
    assert.equal(src.stats().pods!.events, 3);
  } finally {
    src.close();
  }
});

test('API source: a dropped connection resumes from the last resourceVersion, bookmarks move it on', async () => {
  await reset();
  api.put(PODS, pod('a', '10.1.0.1'));
  const { src, podNames, started } = start();
  await started;
  try {
    await watching();
    const lastPodRv = api.put(PODS, pod('b', '10.1.0.2'));
    await waitFor('pod b', () => podNames().includes('b'));
    api.dropWatches();
    await waitFor(
      'pods watch back',
      () => api.requests.filter((r) => r.path === PODS && r.watch).length === 2,
    );
    const resumed = api.requests.filter((r) => r.path === PODS && r.watch)[1]!;
    assert.equal(resumed.resourceVersion, String(lastPodRv));
    assert.equal(api.requests.filter((r) => r.path === PODS && !r.watch).length, 1, 'no relist');

    // Other resources move the revision on; a bookmark tells the pods watch where it is.
    for (let i = 0; i < 3; i++) api.put(NAMESPACES, { metadata: { name: `ns-${i}` } });
    await watching();
    assert.equal(api.bookmark(), 4);
    const bookmarkRv = api.resourceVersion;
    await new Promise((r) => setTimeout(r, 50));
    api.dropWatches();
    await waitFor('pods watch 3', () => api.requests.filter((r) => r.path === PODS && r.watch).length === 3);
    assert.equal(
      api.requests.filter((r) => r.path === PODS && r.watch)[2]!.resourceVersion,
      String(bookmarkRv),
    );
    assert.equal(src.stats().pods!.bookmarks, 1);
    assert.deepEqual(podNames(), ['a', 'b']);
  } finally {
    src.close();
  }
});

for (const expiredAs of ['event', 'status'] as const) {
  test(`API source: 410 (${expiredAs === 'event' ? 'ERROR event in a 200 watch' : 'HTTP status'}) relists and reconciles`, async () => {
    await reset();
    api.expiredAs = expiredAs;
    api.put(PODS, pod('a', '10.1.0.1'));
    api.put(PODS, pod('b', '10.1.0.2'));
    const { src, seen, podNames, started } = start();
    await started;
    try {
      await watching();
      const deliveredBefore = seen.length;
      // Watches made before the outage (on a loaded machine a watch may already have been
      // restarted once, so "the second watch" is not necessarily the one after the outage).
      const watchesBefore = api.requests.filter((r) => r.path === PODS && r.watch).length;
      // The API server goes away; while it is away b is deleted, c created, history compacted.
      api.unavailable = true;
      api.dropWatches();
      api.remove(PODS, 'web', 'b');
      api.put(PODS, pod('c', '10.1.0.3'));
      api.compact();
      const compactedRv = api.resourceVersion;
      await waitFor('a failed retry', () => api.requests.some((r) => r.path === PODS && r.status === 503));
      assert.deepEqual(podNames(), ['a', 'b'], 'nothing changes while away');
      api.unavailable = false;
      await waitFor('relist', () => podNames().join() === 'a,c');
      const pods = api.requests.filter((r) => r.path === PODS && r.status !== 503);
      // The first watch after the outage resumes from before the compaction: expired.
      const watches = pods.filter((r) => r.watch);
      const lastBefore = watches[watchesBefore - 1];
      const expiredWatch = watches[watchesBefore];
      // It resumes from the last version it knew (that watch's own, or a bookmark's after it).
      assert.ok(Number(expiredWatch!.resourceVersion) >= Number(lastBefore!.resourceVersion));
      assert.ok(Number(expiredWatch!.resourceVersion) < compactedRv);
      assert.equal(expiredWatch!.status, expiredAs === 'event' ? 200 : 410);
      assert.equal(pods.filter((r) => !r.watch).length, 2, 'the first list and one relist');
      const last = seen.at(-1)!;
      assert.deepEqual(
        last.pods.map((p) => [p.name, p.ips]),
        [
          ['a', ['10.1.0.1']],
          ['c', ['10.1.0.3']],
        ],
      );
      // a was listed again but unchanged (same resourceVersion): not applied twice.
      assert.equal(src.counters.changes, 2 + 2, 'two initial adds, then delete b and add c');
      assert.ok(seen.length > deliveredBefore);
    } finally {
      src.close();
    }
  });
}

test('API source: 401 without the right token is an error, retried, never synced', async () => {
  await reset();
  const { src, lines, started } = start({ token: 'wrong', syncTimeoutMs: 300 });
  await started;
  try {
    // The start gave up waiting after 300 ms; by then a loaded machine may not have had
    // every resource's answer yet: waited for, not assumed.
    assert.ok(lines.some((l) => l.msg.includes('not synced in time')));
    const refusedLines = () =>
      lines.filter((l) => l.level === 'error' && l.msg === 'API server refused the request');
    await waitFor(
      'every resource tried and refused',
      () => api.requests.filter((r) => r.status === 401).length >= 6 && refusedLines().length >= 6,
    );
    assert.equal(src.synced, false);
    assert.equal(refusedLines()[0]!.obj.status, 401);
  } finally {
    src.close();
  }
});

test('API source: NetworkSets from projectcalico.org/v3 when crd.projectcalico.org/v1 is not served', async () => {
  await reset();
  api.serve(NETSETS_V3, 'projectcalico.org/v3', 'NetworkSet');
  api.put(NETSETS_V3, {
    metadata: { name: 'office', namespace: 'web', labels: { k: 'v' } },
    spec: { nets: ['203.0.113.0/24', 'bogus'] },
  });
  const { src, seen, lines, started } = start();
  await started;
  try {
    assert.deepEqual(seen[0]!.networkSets, [
      { name: 'office', namespace: 'web', labels: { k: 'v' }, nets: ['203.0.113.0/24'] },
    ]);
    assert.equal(src.stats().networksets!.path, NETSETS_V3);
    const ignored = lines.find((l) => l.msg === 'object fields ignored');
    assert.match(String((ignored!.obj.warnings as string[])[0]), /invalid CIDR "bogus"/);
    assert.deepEqual(
      lines.filter((l) => l.msg.includes('not served')).map((l) => l.obj.resource),
      ['globalnetworksets'],
    );
  } finally {
    src.close();
  }
});

test('API source feeds the resolver with the IP history rules: traffic goes to the pod that held the IP', async () => {
  await reset();
  api.put(PODS, pod('old', '10.1.0.9'));
  const resolver = new EndpointResolver({
    nodeName: 'node-1',
    hostEndpoints: false,
    networkSets: false,
    historyMs: 60_000,
  });
  const src = new KubeMetadataSource(kubeConfig(), { coalesceMs: 5, informer: { backoffMs: [20, 100] } });
  await src.start((md, at) => resolver.update(md, at ?? Date.now()));
  try {
    await watching();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    api.remove(PODS, 'web', 'old');
    api.put(PODS, pod('new', '10.1.0.9'));
    await waitFor('new pod', () => resolver.resolve('10.1.0.9', Date.now()).name === 'new');
    assert.equal(resolver.resolve('10.1.0.9', t0).name, 'old');
    assert.equal(resolver.resolve('10.1.0.9', Date.now()).namespace, 'web');
  } finally {
    src.close();
  }
});

test('kubeconfig from a file: the CA in it is what the client trusts', async () => {
  await reset();
  const { chooseKubeConfig, loadKubeConfig } = await import('../../../src/enrich/kubeconfig.ts');
  writeFileSync(api.kubeconfigPath, api.kubeconfig());
  assert.deepEqual(chooseKubeConfig({ file: api.kubeconfigPath, env: {} }), {
    how: 'flag',
    path: api.kubeconfigPath,
  });
  assert.deepEqual(chooseKubeConfig({ env: { KUBECONFIG: '/x' } }), { how: 'KUBECONFIG', path: '/x' });
  assert.equal(chooseKubeConfig({ env: { HOME: '/nonexistent' }, exists: () => false }), null);
  assert.deepEqual(
    chooseKubeConfig({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' }, exists: (p) => p.endsWith('/token') }),
    { how: 'in-cluster', path: '/var/run/secrets/kubernetes.io/serviceaccount/token' },
  );
  api.put(PODS, pod('x', '10.1.0.1'));
  const src = new KubeMetadataSource(await loadKubeConfig({ how: 'flag', path: api.kubeconfigPath }), {
    coalesceMs: 5,
  });
  const seen: ClusterMetadata[] = [];
  await src.start((md) => seen.push(md));
  assert.deepEqual(
    seen[0]!.pods.map((p) => p.name),
    ['x'],
  );
  src.close();
});
