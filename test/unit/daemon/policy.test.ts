// The daemon's policy stage: policies from the metadata file become traces in the records,
// the verdict cross-check feeds flowlogd_policy_verdict_mismatch_total, and when policies
// deny delivered traffic while the kernel never dropped anything by policy, the daemon
// says once that no enforcer seems to run. Real timers; flushes are called directly.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { zeroStats } from '../../../src/aggregate/options.ts';
import { loadConfig } from '../../../src/daemon/config.ts';
import { Daemon } from '../../../src/daemon/daemon.ts';
import { registerMetrics } from '../../../src/daemon/metrics.ts';
import { AT_DST, upd } from '../aggregate/helpers.ts';
import { type MemoryDatapath, MemorySink, memoryDatapath } from './fakes.ts';

const NGINX = '192.0.2.2';
const ACCESS = '192.0.2.1';
const OTHER = '192.0.2.3';
const METADATA = `
apiVersion: v1
kind: List
items:
- kind: Pod
  metadata: {name: nginx-1, namespace: web, labels: {app: nginx}}
  spec: {nodeName: node1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
  status: {phase: Running, podIP: ${NGINX}}
- kind: Pod
  metadata: {name: access-1, namespace: client, labels: {app: access}}
  spec: {nodeName: node1}
  status: {phase: Running, podIP: ${ACCESS}}
- kind: Pod
  metadata: {name: other-1, namespace: client, labels: {app: other}}
  spec: {nodeName: node1}
  status: {phase: Running, podIP: ${OTHER}}
- {kind: Namespace, metadata: {name: web}}
- {kind: Namespace, metadata: {name: client}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: default-deny, namespace: web}
  spec: {podSelector: {}, policyTypes: [Ingress]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: allow-access, namespace: web}
  spec:
    podSelector: {matchLabels: {app: nginx}}
    ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: access}}}], ports: [{port: http}]}]
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata: {name: broken}
  spec: {selector: "app = 'x'"}
`;

test('policies from the metadata file: traces in records, the mismatch counted, no enforcer said once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-policy-'));
  const path = join(dir, 'md.yaml');
  writeFileSync(path, METADATA);
  const logs: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(JSON.parse(chunk.toString()));
        cb();
      },
    }),
  );
  const config = loadConfig({
    argv: [
      '--flow-logs-file-enabled=false',
      '--node-name',
      'node1',
      '--interfaces',
      'cali*',
      '--metadata',
      path,
      '--flow-logs-flush-interval',
      '3600s',
    ],
    env: {},
  });
  const factory = memoryDatapath();
  const sink = new MemorySink();
  const d = await Daemon.start({ config, logger, datapath: factory, sinks: [sink] });
  const dp = factory.made[0] as MemoryDatapath;
  try {
    assert.deepEqual(
      logs.filter((l) => l.msg === 'policy warnings').map((l) => [l.count, (l.warnings as string[])[0]]),
      [
        [
          1,
          `${path}: GlobalNetworkPolicy broken.spec.selector: invalid selector "app = 'x'" at 4: unexpected character "="; policy skipped`,
        ],
      ],
    );
    // Delivered by the "kernel": access → nginx:80 (allowed) and other → nginx:80 (denied by the policies).
    dp.count(upd({ srcIp: ACCESS, dstIp: NGINX, origPackets: 2, origBytes: 120, ...AT_DST }));
    dp.count(upd({ srcIp: OTHER, dstIp: NGINX, srcPort: 40001, origPackets: 3, origBytes: 180, ...AT_DST }));
    await d.flush();
    const traces = sink
      .records()
      .map((r) => [r.source_name, (r.policies as { enforced_policies: string[] }).enforced_policies])
      .sort();
    assert.deepEqual(traces, [
      ['-', ['0|default|web/knp.default.allow-access|allow|0']],
      ['-', ['0|default|web/knp.default.default-deny|deny|-1']],
    ]);
    // Both ended by the idle timeout (their packets are old): judged at once.
    const noEnforcer = () =>
      logs.filter((l) => String(l.msg).startsWith('policies deny connections the kernel delivered'));
    assert.deepEqual(
      noEnforcer().map((l) => [l.deniedButDelivered, l.kernelPolicyDrops]),
      [[1, 0]],
    );
    dp.count(upd({ srcIp: OTHER, dstIp: NGINX, srcPort: 40002, origPackets: 1, origBytes: 60, ...AT_DST }));
    await d.flush();
    assert.equal(noEnforcer().length, 1, 'said once');
    await d.stop();
    const [stopped] = logs.filter((l) => l.msg === 'final flush written; stopped');
    const agg = stopped!.aggregator as Record<string, number>;
    assert.deepEqual(
      [agg.policyMismatchIngressKernelAllowed, agg.policyMismatchIngressKernelDropped, agg.policyEvaluations],
      [2, 0, 3],
    );
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flowlogd_policy_verdict_mismatch_total reads the cross-check by direction and kernel verdict', async () => {
  const r = new Registry();
  const stats = {
    ...zeroStats(),
    policyMismatchIngressKernelAllowed: 2,
    policyMismatchIngressKernelDropped: 3,
    policyMismatchEgressKernelAllowed: 0,
    policyMismatchEgressKernelDropped: 5,
  };
  registerMetrics(r, {
    datapath: { stats: () => ({ kernel: {} }), interfaces: () => [] },
    aggregator: { stats: () => stats },
    sink: { statsBySink: () => ({}) },
  });
  const text = await r.metrics();
  const lines = text.split('\n').filter((l) => l.startsWith('flowlogd_policy_verdict_mismatch_total{'));
  assert.deepEqual(lines.sort(), [
    'flowlogd_policy_verdict_mismatch_total{direction="egress",kernel="allowed"} 0',
    'flowlogd_policy_verdict_mismatch_total{direction="egress",kernel="dropped"} 5',
    'flowlogd_policy_verdict_mismatch_total{direction="ingress",kernel="allowed"} 2',
    'flowlogd_policy_verdict_mismatch_total{direction="ingress",kernel="dropped"} 3',
  ]);
});
