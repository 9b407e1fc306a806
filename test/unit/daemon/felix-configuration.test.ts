import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { type ClusterSettings, FelixConfigurationWatcher } from '../../../src/daemon/felix-configuration.ts';
import { FakeApiServer } from '../../../src/lab/fake-apiserver.ts';

const FC_V1 = '/apis/crd.projectcalico.org/v1/felixconfigurations';
const FC_V3 = '/apis/projectcalico.org/v3/felixconfigurations';

let api: FakeApiServer;
before(async () => {
  api = await FakeApiServer.start();
});
after(() => api.close());

function kc(): KubeConfig {
  const k = new KubeConfig();
  k.loadFromString(api.kubeconfig());
  return k;
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('FelixConfiguration: default and node.<name> from crd.projectcalico.org/v1, only flow log fields, live changes', async () => {
  api.serve(FC_V1, 'crd.projectcalico.org/v1', 'FelixConfiguration');
  api.put(FC_V1, {
    metadata: { name: 'default' },
    spec: {
      flowLogsFlushInterval: '15s',
      flowLogsFileAggregationKindForAllowed: 1,
      logSeverityScreen: 'Info',
    },
  });
  api.put(FC_V1, { metadata: { name: 'node.node-2' }, spec: { flowLogsFlushInterval: '99s' } });
  const changes: ClusterSettings[] = [];
  const w = new FelixConfigurationWatcher(kc(), 'node-1', {
    onChange: (s) => changes.push(s),
    informer: { backoffMs: [20, 100] },
  });
  try {
    const first = await w.start();
    assert.equal(w.synced, true);
    // Felix's own settings (logSeverityScreen) are not flowlogd's: left out, not an error.
    assert.deepEqual(first, {
      default: {
        name: 'default',
        spec: { flowLogsFlushInterval: '15s', flowLogsFileAggregationKindForAllowed: 1 },
      },
      node: null,
    });
    await waitFor('watch', () => api.openWatchesOn(FC_V1) === 1);
    // Another node's object and a field flowlogd does not read: no change for this node.
    api.put(FC_V1, { metadata: { name: 'node.node-2' }, spec: { flowLogsFlushInterval: '98s' } });
    api.put(FC_V1, {
      metadata: { name: 'default' },
      spec: {
        flowLogsFlushInterval: '15s',
        flowLogsFileAggregationKindForAllowed: 1,
        logSeverityScreen: 'Debug',
      },
    });
    api.put(FC_V1, { metadata: { name: 'node.node-1' }, spec: { flowLogsFlushInterval: '5s' } });
    await waitFor('node object', () => changes.length === 1);
    assert.deepEqual(changes[0]!.node, { name: 'node.node-1', spec: { flowLogsFlushInterval: '5s' } });
    api.remove(FC_V1, null, 'node.node-1');
    await waitFor('node object deleted', () => changes.length === 2);
    assert.equal(changes[1]!.node, null);
    assert.equal(changes[1]!.default?.spec.flowLogsFlushInterval, '15s');
  } finally {
    w.stop();
    api.unserve(FC_V1);
  }
});

test('FelixConfiguration: from projectcalico.org/v3 when only that is served; none at all is not fatal', async () => {
  const none = new FelixConfigurationWatcher(kc(), 'node-1', { informer: { backoffMs: [20, 100] } });
  assert.deepEqual(await none.start(), { default: null, node: null });
  assert.equal(none.synced, true, 'not served counts as synced: nothing to wait for');
  assert.equal(none.stats().served, false);
  none.stop();

  api.serve(FC_V3, 'projectcalico.org/v3', 'FelixConfiguration');
  api.put(FC_V3, { metadata: { name: 'node.node-1' }, spec: { flowLogsFileIncludeLabels: false } });
  const w = new FelixConfigurationWatcher(kc(), 'node-1', { informer: { backoffMs: [20, 100] } });
  try {
    assert.deepEqual(await w.start(), {
      default: null,
      node: { name: 'node.node-1', spec: { flowLogsFileIncludeLabels: false } },
    });
    assert.equal(w.stats().path, FC_V3);
  } finally {
    w.stop();
    api.unserve(FC_V3);
  }
});
