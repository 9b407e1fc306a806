import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { aggregationSettings, ConfigError, LIVE_SETTINGS, loadConfig } from '../../../src/daemon/config.ts';
import { formatDuration, parseDuration } from '../../../src/daemon/duration.ts';

const FILE = {
  path: '/etc/flowlogd/felix.yaml',
  text: `apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  flowLogsFlushInterval: 1m
  flowLogsFileMaxFiles: 9
  flowLogsFileIncludeLabels: false
  bpfLogLevel: Debug
`,
};

function problems(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('durations', () => {
  test('Go-style', () => {
    const cases: [string, number | null][] = [
      ['15s', 15_000],
      ['5m', 300_000],
      ['1h30m', 5_400_000],
      ['1.5h', 5_400_000],
      ['500ms', 500],
      ['2m3.5s', 123_500],
      ['0', 0],
      ['15', null],
      ['-5s', null],
      ['5 m', null],
      ['1d', null],
      ['', null],
    ];
    for (const [s, ms] of cases) assert.equal(parseDuration(s), ms, s);
    assert.equal(formatDuration(5_400_500), '1h30m500ms');
  });
});

describe('loadConfig', () => {
  test('defaults (SPEC §4), no metadata: host endpoint on, nodeName from hostname', () => {
    const c = loadConfig({ argv: [], env: {}, hostname: 'box' });
    assert.deepEqual(
      [
        c.flowLogsFlushIntervalMs,
        c.flowLogsFileEnabled,
        c.flowLogsFileDirectory,
        c.flowLogsFileMaxFiles,
        c.flowLogsFileMaxFileSizeMB,
        c.flowLogsFileAggregationKindForAllowed,
        c.flowLogsFileAggregationKindForDenied,
        c.flowLogsFileEnabledForAllowed,
        c.flowLogsFileEnabledForDenied,
        c.flowLogsFileIncludeLabels,
        c.flowLogsFileIncludePolicies,
        c.flowLogsFileIncludeService,
        c.flowLogsEnableHostEndpoint,
        c.flowLogsEnableNetworkSets,
        c.flowLogsIdleTimeoutMs,
        c.flowLogsTcpIdleTimeoutMs,
        c.metadata,
        c.nodeName,
        c.logLevel,
      ],
      [
        300_000,
        true,
        '/var/log/calico/flowlogs',
        5,
        100,
        2,
        1,
        true,
        true,
        true,
        true,
        true,
        true,
        false,
        60_000,
        3_600_000,
        null,
        'box',
        'info',
      ],
    );
    assert.ok(Object.isFrozen(c));
  });

  test('with metadata the host endpoint defaults to off; NODENAME beats the hostname', () => {
    const c = loadConfig({ argv: ['--metadata', '/m.yaml'], env: { NODENAME: 'n7' }, hostname: 'box' });
    assert.deepEqual([c.metadata, c.flowLogsEnableHostEndpoint, c.nodeName], ['/m.yaml', false, 'n7']);
  });

  test('precedence: command line > environment > file > defaults', () => {
    const env = { FELIX_FLOWLOGSFLUSHINTERVAL: '20', FELIX_FLOWLOGSFILEMAXFILES: '7' };
    const c = loadConfig({ argv: ['--flow-logs-flush-interval', '15s'], env, file: FILE, hostname: 'h' });
    assert.equal(c.flowLogsFlushIntervalMs, 15_000); // cli over env and file
    assert.equal(c.flowLogsFileMaxFiles, 7); // env over file
    assert.equal(c.flowLogsFileIncludeLabels, false); // file over default
    assert.equal(c.flowLogsFileMaxFileSizeMB, 100); // default
    assert.deepEqual(
      [
        c.sources.flowLogsFlushIntervalMs,
        c.sources.flowLogsFileMaxFiles,
        c.sources.flowLogsFileIncludeLabels,
        c.sources.flowLogsFileMaxFileSizeMB,
      ],
      ['command line', 'environment', 'file', 'default'],
    );
    assert.deepEqual(c.warnings, [
      'spec.bpfLogLevel (file /etc/flowlogd/felix.yaml): not used by flowlogd, ignored',
    ]);
    const envOnly = loadConfig({ env, file: FILE, hostname: 'h' });
    assert.equal(envOnly.flowLogsFlushIntervalMs, 20_000); // plain integer in env = seconds
  });

  test('the file comes from --config or FLOWLOGD_CONFIG', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowlogd-cfg-'));
    try {
      const p = join(dir, 'f.yaml');
      writeFileSync(p, FILE.text);
      assert.equal(loadConfig({ argv: ['--config', p], hostname: 'h' }).flowLogsFileMaxFiles, 9);
      assert.equal(loadConfig({ env: { FLOWLOGD_CONFIG: p }, hostname: 'h' }).configFile, p);
      assert.deepEqual(
        problems(() => loadConfig({ argv: ['--config', join(dir, 'missing.yaml')] })).map((s) =>
          s.replaceAll(dir, 'D'),
        ),
        ["config file D/missing.yaml: ENOENT: no such file or directory, open 'D/missing.yaml'"],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('booleans, globs, log level and flags without a value', () => {
    const c = loadConfig({
      argv: [
        '--flow-logs-file-include-service',
        'FALSE',
        '--flow-logs-enable-network-sets',
        '--interfaces',
        'eth0, cali*',
      ],
      env: { FLOWLOGD_LOG_LEVEL: 'DEBUG', FELIX_FLOWLOGSFILEENABLEDFORDENIED: 'false' },
      hostname: 'h',
    });
    assert.deepEqual(
      [
        c.flowLogsFileIncludeService,
        c.flowLogsEnableNetworkSets,
        c.interfaces,
        c.logLevel,
        c.flowLogsFileEnabledForDenied,
      ],
      [false, true, ['eth0', 'cali*'], 'debug', false],
    );
  });

  test('every bad value is reported at once, naming setting, source, value and what is allowed', () => {
    const got = problems(() =>
      loadConfig({
        argv: ['--flow-logs-file-max-file-size-mb', '0', '--interfaces', 'eth0,this-name-is-too-long'],
        env: {
          FELIX_FLOWLOGSFILEAGGREGATIONKINDFORALLOWED: '7',
          FELIX_FLOWLOGSFLUSHINTERVAL: '500ms',
          FELIX_FLOWLOGSFILEENABLED: 'yes',
          FELIX_FLOWLOGSFILEINCLUDELABLES: 'true',
          FLOWLOGD_LOG_LEVEL: 'loud',
        },
        file: {
          path: '/f.yaml',
          text: 'kind: FelixConfiguration\nspec:\n  flowLogsIdleTimeout: 30\n  flowLogsFileAggregationKindForDenied: 1.5\n',
        },
      }),
    );
    assert.deepEqual(got, [
      'FELIX_FLOWLOGSFILEINCLUDELABLES (environment): unknown flow logs setting',
      'FELIX_FLOWLOGSFLUSHINTERVAL=500ms (environment): must be from 1s to 86400s',
      'FELIX_FLOWLOGSFILEENABLED=yes (environment): must be true or false',
      '--flow-logs-file-max-file-size-mb=0 (command line): must be an integer ≥ 1',
      'FELIX_FLOWLOGSFILEAGGREGATIONKINDFORALLOWED=7 (environment): must be an integer 0–3',
      'spec.flowLogsFileAggregationKindForDenied=1.5 (file /f.yaml): must be an integer 0–3',
      'spec.flowLogsIdleTimeout=30 (file /f.yaml): must be a duration such as 15s, 5m or 1h30m',
      '--interfaces=eth0,this-name-is-too-long (command line): must be a comma-separated list of interface names or globs (*, ?), each at most 15 characters',
      'FLOWLOGD_LOG_LEVEL=loud (environment): must be one of fatal, error, warn, info, debug, trace, silent',
    ]);
  });

  test('a bad lower-precedence value is an error even when a higher source overrides it', () => {
    assert.deepEqual(
      problems(() =>
        loadConfig({
          argv: ['--flow-logs-file-max-files', '3'],
          env: { FELIX_FLOWLOGSFILEMAXFILES: 'many' },
        }),
      ),
      ['FELIX_FLOWLOGSFILEMAXFILES=many (environment): must be an integer ≥ 1'],
    );
  });

  test('unknown flags, wrong kind of file, unknown flowLogs keys', () => {
    assert.deepEqual(
      problems(() => loadConfig({ argv: ['--flow-logs-flush-intervall', '5s'] })),
      [
        "unknown option '--flow-logs-flush-intervall'\n(Did you mean --flow-logs-flush-interval?) (command line)",
      ],
    );
    assert.deepEqual(
      problems(() => loadConfig({ file: { path: '/f', text: 'kind: Pod\nspec: {}\n' } })),
      ['kind=Pod (file /f): must be FelixConfiguration'],
    );
    assert.deepEqual(
      problems(() => loadConfig({ file: { path: '/f', text: 'spec:\n  flowLogsFlushIntrval: 5s\n' } })),
      ['spec.flowLogsFlushIntrval (file /f): unknown flow logs setting'],
    );
  });
});

test('ranges: metrics port, resync interval (0 = off), durations over a day', () => {
  const problems = (argv: string[]) => {
    try {
      loadConfig({ argv, env: {} });
      return [];
    } catch (err) {
      return (err as ConfigError).problems;
    }
  };
  assert.deepEqual(problems(['--metrics-port', '0']), [
    '--metrics-port=0 (command line): must be an integer from 1 to 65535',
  ]);
  assert.deepEqual(problems(['--metrics-port', '65536']), [
    '--metrics-port=65536 (command line): must be an integer from 1 to 65535',
  ]);
  assert.deepEqual(problems(['--max-connections', '999']), [
    '--max-connections=999 (command line): must be an integer from 1000 to 100000000',
  ]);
  assert.deepEqual(problems(['--state-directory-max-size-mb', '0']), [
    '--state-directory-max-size-mb=0 (command line): must be an integer from 1 to 1048576',
  ]);
  assert.deepEqual(problems(['--conntrack-resync-interval', '500ms']), [
    '--conntrack-resync-interval=500ms (command line): must be from 1s to 3600s (or 0 for off)',
  ]);
  assert.equal(
    loadConfig({ argv: ['--conntrack-resync-interval', '0'], env: {} }).conntrackResyncIntervalMs,
    0,
  );
  assert.deepEqual(problems(['--flow-logs-flush-interval', '25h']), [
    '--flow-logs-flush-interval=25h (command line): must be from 1s to 86400s',
  ]);
});

test('the settings a SIGHUP applies at once, and what they give the aggregator, come from the SETTINGS table', () => {
  assert.deepEqual([...LIVE_SETTINGS].sort(), [
    'flowLogsFileAggregationKindForAllowed',
    'flowLogsFileAggregationKindForDenied',
    'flowLogsFileEnabledForAllowed',
    'flowLogsFileEnabledForDenied',
    'flowLogsFileIncludeLabels',
    'flowLogsFileIncludePolicies',
    'flowLogsFileIncludeService',
    'flowLogsFlushIntervalMs',
    'flowLogsIdleTimeoutMs',
    'flowLogsTcpIdleTimeoutMs',
  ]);
  const c = loadConfig({
    argv: ['--flow-logs-file-aggregation-kind-for-denied', '3', '--flow-logs-tcp-idle-timeout', '90s'],
    env: { FELIX_FLOWLOGSFILEINCLUDELABELS: 'false' },
    hostname: 'h',
  });
  assert.deepEqual(aggregationSettings(c), {
    kindForAllowed: 2,
    kindForDenied: 3,
    enabledForAllowed: true,
    enabledForDenied: true,
    includeLabels: false,
    includePolicies: true,
    includeService: true,
    idleTimeoutMs: 60_000,
    tcpIdleTimeoutMs: 90_000,
  });
});
