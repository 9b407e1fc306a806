import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../../src/daemon/config.ts';
import { shippingOptions } from '../../../src/daemon/ship-config.ts';

const load = (argv: string[], env: Record<string, string> = {}, text?: string) =>
  loadConfig({ argv, env, hostname: 'node-a', ...(text ? { file: { path: 'felix.yaml', text } } : {}) });

test('the shipping endpoints by flag, FLOWLOGD_* and the YAML, with one precedence', () => {
  const c = load(
    [
      '--fluent-forward-address',
      'fluentd.logging:24224',
      '--nats-url',
      'nats://10.0.0.1:4222',
      '--nats-create-stream',
    ],
    { FLOWLOGD_OTLP_ENDPOINT: 'http://collector:4318', FLOWLOGD_NATS_URL: 'nats://ignored:1' },
    'kind: FelixConfiguration\nspec:\n  spoolDirectory: /data/spool\n  natsSubject: flows.a\n  flowLogsDynamicAggregationEnabled: true\n',
  );
  assert.deepEqual(
    [c.fluentForwardAddress, c.natsUrl, c.natsCreateStream, c.otlpEndpoint, c.spoolDirectory, c.natsSubject],
    [
      'fluentd.logging:24224',
      'nats://10.0.0.1:4222',
      true,
      'http://collector:4318',
      '/data/spool',
      'flows.a',
    ],
  );
  assert.deepEqual(
    [c.sources.natsUrl, c.sources.otlpEndpoint, c.sources.spoolDirectory, c.sources.fluentForwardTag],
    ['command line', 'environment', 'file', 'default'],
  );
  assert.equal(c.flowLogsDynamicAggregationEnabled, true);
  const o = shippingOptions(c);
  assert.equal(o.forward.tag, 'flows');
  assert.deepEqual(o.nats.batch, { records: 8192, bytes: 512 << 10, timeoutMs: 10_000 });
  assert.equal(o.spoolMaxBytes, 256 << 20);
  assert.equal(o.node, 'node-a');
});

test('defaults: no network sink, flows.log stays the default; Calico Enterprise defaults for dynamic aggregation', () => {
  const c = load([]);
  assert.deepEqual([c.fluentForwardAddress, c.natsUrl, c.otlpEndpoint], [null, null, null]);
  assert.equal(c.flowLogsFileEnabled, true);
  assert.deepEqual(
    [c.flowLogsDynamicAggregationEnabled, c.flowLogsAggregationThresholdBytes, c.flowLogsPositionFilePath],
    [false, 8192, '/var/log/calico/flows.log.pos'],
  );
  assert.equal(
    load([], { FELIX_FLOWLOGSAGGREGATIONTHRESHOLDBYTES: '65536' }).flowLogsAggregationThresholdBytes,
    65536,
  );
});

test('bad endpoints and bounds are all named at once, with the value', () => {
  try {
    load([
      '--fluent-forward-address',
      'fluentd',
      '--nats-url',
      'http://n:4222',
      '--otlp-endpoint',
      'collector:4318',
      '--otlp-batch-bytes',
      '10',
      '--spool-fsync-interval',
      '5ms',
    ]);
    assert.fail('accepted');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, [
      '--fluent-forward-address=fluentd (command line): must be HOST:PORT (port 1–65535)',
      '--nats-url=http://n:4222 (command line): must be a nats: or tls: URL with a host',
      '--otlp-endpoint=collector:4318 (command line): must be a http: or https: URL with a host',
      '--otlp-batch-bytes=10 (command line): must be an integer from 1024 to 67108864',
      '--spool-fsync-interval=5ms (command line): must be from 0.01s to 60s (or 0 for off)',
    ]);
  }
});
