// `flowlogd run` with only a kubeconfig pointing at the fake API server (src/lab/
// fake-apiserver.ts): no --metadata, and the flush interval and aggregation kind only in
// FelixConfiguration objects. Pods are named from the API; a pod created after start is
// named from its first connection; a FelixConfiguration change (kind and interval)
// applies without a restart, and a bad value in it is logged and changes nothing; after
// the history is compacted under the watch (410) a new pod is still named; /readyz is
// 200 once everything has synced.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Cluster, type ReplicaSet } from '../../src/lab/cluster.ts';
import { FakeApiServer } from '../../src/lab/fake-apiserver.ts';
import { Flowlogd, flushLines, type Rec, until } from '../../src/lab/flowlogd.ts';
import type { Lab } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const PODS = '/api/v1/pods';
const FC = '/apis/crd.projectcalico.org/v1/felixconfigurations';
const PATHS: Record<string, string> = {
  Pod: PODS,
  Service: '/api/v1/services',
  Namespace: '/api/v1/namespaces',
  Node: '/api/v1/nodes',
};

/**
 * Waits (generously: load only makes flushes later) for `n` flushes on the timer of
 * `intervalMs` logged after the message `after`, and checks them: at most one flush
 * before them (one already under way when the change landed), every later one on that
 * timer, and the intervals they closed never shorter than its period (a timer never
 * fires early; 250 ms allow for the daemon reading its clock a little after it fired).
 * Read from the flushes' own fields, not from when they were logged.
 */
async function expectTimer(d: Flowlogd, intervalMs: number, n: number, after?: string): Promise<void> {
  const flushes = () => flushLines(d.stderr, after);
  const on = () => flushes().slice(flushes().findIndex((f) => f.intervalMs === intervalMs));
  await until(
    `${n} flushes on the ${intervalMs} ms timer`,
    () => flushes().some((f) => f.intervalMs === intervalMs) && on().length >= n,
    10 * n * intervalMs,
  );
  const all = flushes();
  const first = all.findIndex((f) => f.intervalMs === intervalMs);
  assert.ok(first <= (after === undefined ? 0 : 1), `flushes on another timer: ${JSON.stringify(all)}`);
  const mine = all.slice(first);
  assert.deepEqual(
    mine.map((f) => f.intervalMs),
    mine.map(() => intervalMs),
  );
  for (let i = 1; i < mine.length; i++)
    assert.ok(
      mine[i]!.endMs - mine[i - 1]!.endMs >= intervalMs - 250,
      `flush ${mine[i]!.seq} closed ${mine[i]!.endMs - mine[i - 1]!.endMs} ms after the one before`,
    );
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('flowlogd run with a kubeconfig only: metadata and FelixConfiguration from the API', {
  skip,
}, () => {
  let lab!: Lab;
  let cluster!: Cluster;
  let api: FakeApiServer | null = null;
  let d: Flowlogd | null = null;
  suiteLab(
    (l) => {
      lab = l;
      cluster = new Cluster(lab, `node-${lab.prefix}`);
    },
    async () => {
      await d?.stop();
      await api?.close();
    },
  );

  /** Puts every object of the lab's cluster the API does not have yet. */
  const known = new Set<string>();
  function publish(): void {
    const list = cluster.metadata() as {
      items: { kind: string; metadata: { name: string; namespace?: string } }[];
    };
    for (const o of list.items) {
      const key = `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      if (known.has(key)) continue;
      known.add(key);
      api!.put(PATHS[o.kind]!, o as unknown as Record<string, unknown>);
    }
  }

  async function connect(from: ReplicaSet, to: ReplicaSet): Promise<void> {
    await lab.traffic(
      from.pods[0]!,
      cli('tcp', { host: to.pods[0]!.ipv4, port: 8080, conns: 1, send: 300, recv: 500 }),
    );
  }

  const between = (recs: Rec[], from: ReplicaSet, to: ReplicaSet) =>
    recs.filter(
      (r) =>
        r.proto === 'tcp' &&
        r.dest_port === 8080 &&
        String(r.source_name_aggr) === `${from.generateName}*` &&
        String(r.dest_name_aggr) === `${to.generateName}*`,
    );

  test('named pods, a late pod, live FelixConfiguration, a compacted history, /readyz', async () => {
    api = await FakeApiServer.start();
    for (const [kind, path] of Object.entries(PATHS)) api.serve(path, 'v1', kind);
    api.serve(FC, 'crd.projectcalico.org/v1', 'FelixConfiguration');
    api.put(FC, {
      metadata: { name: 'default' },
      spec: {
        flowLogsFlushInterval: '2s',
        flowLogsFileAggregationKindForAllowed: 0,
        logSeverityScreen: 'Info',
      },
    });
    const access = cluster.addReplicaSet('default', 'access', 'client', 1);
    const nginx = cluster.addReplicaSet('web', 'nginx', 'backend', 1);
    publish();
    await lab.serve(nginx.pods[0]!, 8080);

    const port = await freePort();
    d = new Flowlogd(
      cli(null, {
        kubeconfig: api.kubeconfigPath,
        interfaces: 'cali*',
        nodeName: cluster.nodeName,
        metricsAddress: '127.0.0.1',
        metricsPort: port,
        conntrackResyncInterval: '1s',
      }),
    );
    await d.started;
    const get = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: r.status, body: await r.text() };
    };
    // Ready: attached, every informer synced (Calico's sets are not served here: skipped).
    assert.deepEqual(await get('/readyz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get('/livez'), { status: 200, body: 'ok\n' });
    assert.match(d.stderr, /"resource":"networksets".*resource not served by this cluster/);
    assert.match(d.stderr, /"flushIntervalMs":2000/);

    // 1. Pods named from the API, at kind 0 (from FelixConfiguration default).
    await connect(access, nginx);
    await until('a record of access -> nginx', () => between(d!.records(), access, nginx).length >= 2, 15000);
    const first = between(d.records(), access, nginx);
    assert.deepEqual(first.map((r) => r.reporter).sort(), ['dst', 'src']);
    for (const r of first) {
      assert.equal(r.source_name, access.pods[0]!.name);
      assert.equal(r.dest_name, nginx.pods[0]!.name);
      assert.equal(r.source_namespace, 'default');
      assert.equal(r.dest_namespace, 'web');
    }
    // The 2 s flush interval from FelixConfiguration default.
    await expectTimer(d, 2000, 3);

    // 2. A pod created after start, named from its first connection.
    const late = cluster.addReplicaSet('default', 'late', 'client', 1);
    publish();
    await connect(late, nginx);
    await until('a record of late -> nginx', () => between(d!.records(), late, nginx).length >= 2, 15000);
    for (const r of between(d.records(), late, nginx)) assert.equal(r.source_name, late.pods[0]!.name);

    // 3. FelixConfiguration node.<name> changes kind and interval: applied live.
    api.put(FC, {
      metadata: { name: `node.${cluster.nodeName}` },
      spec: { flowLogsFlushInterval: '3s', flowLogsFileAggregationKindForAllowed: 2 },
    });
    await until('reloaded', () => d!.stderr.includes('"msg":"FelixConfiguration changed"'), 10000);
    // The 3 s interval, live.
    await expectTimer(d, 3000, 3, '"msg":"FelixConfiguration changed"');
    const before = d.records().length;
    await connect(access, nginx);
    await until(
      'a kind 2 record',
      () => between(d!.records().slice(before), access, nginx).some((r) => r.source_name === '-'),
      15000,
    );
    for (const r of between(d.records().slice(before), access, nginx)) {
      assert.equal(r.source_name, '-', 'kind 2: names aggregated');
      assert.equal(r.source_ip, null);
    }
    assert.equal(d.child.exitCode, null, 'no restart');

    // A bad value in the CR: logged with object, field and value; nothing changes.
    api.put(FC, {
      metadata: { name: `node.${cluster.nodeName}` },
      spec: { flowLogsFlushInterval: 'never', flowLogsFileAggregationKindForAllowed: 0 },
    });
    await until('the bad value logged', () => d!.stderr.includes('spec.flowLogsFlushInterval=never'), 10000);
    assert.match(
      d.stderr,
      new RegExp(`spec.flowLogsFlushInterval=never \\(FelixConfiguration node.${cluster.nodeName}\\)`),
    );
    const afterBad = d.records().length;
    await connect(access, nginx);
    await until(
      'a record after the bad value',
      () => between(d!.records().slice(afterBad), access, nginx).length >= 2,
      15000,
    );
    for (const r of between(d.records().slice(afterBad), access, nginx))
      assert.equal(r.source_name, '-', 'still kind 2');
    // Still the 3 s interval: every flush since the bad value on the 3 s timer.
    const bad = 'spec.flowLogsFlushInterval=never';
    await expectTimer(d, 3000, 3, bad);
    assert.equal(flushLines(d.stderr, bad)[0]?.intervalMs, 3000);

    // 4. The history is compacted under the watches (ERROR 410): a relist, then a new pod is named.
    const listsBefore = api.requests.filter((r) => r.path === PODS && !r.watch).length;
    api.expireWatches();
    await until(
      'a relist of pods',
      () => api!.requests.filter((r) => r.path === PODS && !r.watch).length > listsBefore,
      10000,
    );
    const after = cluster.addReplicaSet('default', 'after', 'client', 1);
    publish();
    await connect(after, nginx);
    await until('a record of after -> nginx', () => between(d!.records(), after, nginx).length >= 2, 15000);
    assert.deepEqual(await get('/readyz'), { status: 200, body: 'ok\n' });
    const metrics = (await get('/metrics')).body;
    assert.match(metrics, /flowlogd_kubernetes_objects\{resource="pods",counter="objects"\} 4/);
    assert.match(metrics, /process_resident_memory_bytes \d+/);

    assert.equal(await d.stop(), 0, 'clean exit');
  });
});
