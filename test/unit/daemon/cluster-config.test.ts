import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { LiveClusterConfig } from '../../../src/daemon/cluster-config.ts';
import { ConfigError, loadConfig } from '../../../src/daemon/config.ts';
import type { ClusterSettings } from '../../../src/daemon/felix-configuration.ts';

const DEFAULT = {
  flowLogsFlushInterval: '15s',
  flowLogsFileAggregationKindForAllowed: 1,
  flowLogsFileIncludeLabels: false,
  flowLogsFileMaxFiles: 7,
  flowLogsEnableNetworkSets: true,
};
const NODE = {
  flowLogsFlushInterval: '5s',
  flowLogsFileAggregationKindForAllowed: 0,
  flowLogsFileMaxFiles: 9,
};
const FILE = {
  path: '/etc/flowlogd.yaml',
  text: 'kind: FelixConfiguration\nspec:\n  flowLogsFileAggregationKindForAllowed: 3\n  flowLogsFileMaxFiles: 11\n',
};

function cluster(def: object | null, node: object | null): ClusterSettings {
  return {
    default: def && { name: 'default', spec: def as Record<string, unknown> },
    node: node && { name: 'node.node-1', spec: node as Record<string, unknown> },
  };
}

test('precedence: command line > environment > file > FelixConfiguration node.<name> > default > defaults', () => {
  const c = loadConfig({
    argv: ['--flow-logs-file-max-files', '15'],
    env: { FELIX_FLOWLOGSFILEMAXFILES: '13', FELIX_FLOWLOGSFILEMAXFILESIZEMB: '20' },
    file: FILE,
    cluster: cluster(DEFAULT, NODE),
    apiMetadata: true,
  });
  assert.equal(c.flowLogsFileMaxFiles, 15);
  assert.equal(c.sources.flowLogsFileMaxFiles, 'command line');
  assert.equal(c.flowLogsFileMaxFileSizeMB, 20);
  assert.equal(c.sources.flowLogsFileMaxFileSizeMB, 'environment');
  assert.equal(c.flowLogsFileAggregationKindForAllowed, 3);
  assert.equal(c.sources.flowLogsFileAggregationKindForAllowed, 'file');
  assert.equal(c.flowLogsFlushIntervalMs, 5000);
  assert.equal(c.sources.flowLogsFlushIntervalMs, 'FelixConfiguration node.node-1');
  assert.equal(c.flowLogsFileIncludeLabels, false);
  assert.equal(c.sources.flowLogsFileIncludeLabels, 'FelixConfiguration default');
  assert.equal(c.flowLogsEnableNetworkSets, true);
  assert.equal(c.flowLogsFileIncludeService, true);
  assert.equal(c.sources.flowLogsFileIncludeService, 'default');
  // Metadata from the API: host endpoints default to off, as with a metadata file.
  assert.equal(c.flowLogsEnableHostEndpoint, false);
  assert.equal(loadConfig({}).flowLogsEnableHostEndpoint, true);

  // Without the node object, default's value; without both, the built-in default.
  assert.equal(loadConfig({ cluster: cluster(DEFAULT, null) }).flowLogsFlushIntervalMs, 15_000);
  assert.equal(loadConfig({ cluster: cluster(null, null) }).flowLogsFlushIntervalMs, 300_000);
});

test('a bad FelixConfiguration value names the object, the field and the value', () => {
  assert.throws(
    () =>
      loadConfig({
        cluster: cluster({ flowLogsFlushInterval: 'soon' }, { flowLogsFileAggregationKindForAllowed: 7 }),
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, [
        'spec.flowLogsFlushInterval=soon (FelixConfiguration default): must be a duration such as 15s, 5m or 1h30m',
        'spec.flowLogsFileAggregationKindForAllowed=7 (FelixConfiguration node.node-1): must be an integer 0–3',
      ]);
      return true;
    },
  );
});

test('LiveClusterConfig: a bad value in a CR is logged and the last good configuration stays in force', () => {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)));
        cb();
      },
    }),
  );
  const live = new LiveClusterConfig((c) => loadConfig({ cluster: c, apiMetadata: true }), log);
  // At start a bad object leaves the built-in defaults (there is no last good one yet).
  let c = live.apply(cluster({ flowLogsFlushInterval: '-1s' }, null));
  assert.equal(c.flowLogsFlushIntervalMs, 300_000);
  assert.equal(live.rejected, 1);
  c = live.apply(cluster(DEFAULT, NODE));
  assert.equal(c.flowLogsFlushIntervalMs, 5000);
  assert.equal(c.flowLogsFileAggregationKindForAllowed, 0);
  // Someone edits node.node-1 badly: everything stays as it was.
  c = live.apply(
    cluster(DEFAULT, { ...NODE, flowLogsFlushInterval: 'fast', flowLogsFileAggregationKindForAllowed: 2 }),
  );
  assert.equal(c.flowLogsFlushIntervalMs, 5000);
  assert.equal(c.flowLogsFileAggregationKindForAllowed, 0);
  assert.equal(live.rejected, 2);
  const errors = lines.filter((l) => l.level === 50).map((l) => l.problem);
  assert.deepEqual(errors, [
    'spec.flowLogsFlushInterval=-1s (FelixConfiguration default): must be a duration such as 15s, 5m or 1h30m',
    'spec.flowLogsFlushInterval=fast (FelixConfiguration node.node-1): must be a duration such as 15s, 5m or 1h30m',
  ]);
  // Fixed: applies.
  c = live.apply(cluster(DEFAULT, { ...NODE, flowLogsFlushInterval: '7s' }));
  assert.equal(c.flowLogsFlushIntervalMs, 7000);

  // A problem outside the cluster objects is not the CR's: it fails as without a cluster.
  const broken = new LiveClusterConfig(
    (cl) => loadConfig({ cluster: cl, env: { FELIX_FLOWLOGSFLUSHINTERVAL: 'x' } }),
    log,
  );
  assert.throws(() => broken.apply(cluster(DEFAULT, null)), ConfigError);
});
