// The shipped manifests (deploy/) against what flowlogd needs and no more: fails on
// `privileged`, a capability outside the measured set, a ClusterRole verb beyond
// get/list/watch or a resource flowlogd does not read, a missing probe, request or limit.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { SETTINGS } from '../../../src/daemon/config.ts';
import { FELIX_CONFIGURATION_RESOURCE } from '../../../src/daemon/felix-configuration.ts';
import { SHIP_DEFAULTS } from '../../../src/daemon/ship-config.ts';
import { DAEMON_RESOURCES } from '../../../src/enrich/k8s-kinds.ts';

const DEPLOY = join(import.meta.dirname, '../../../deploy');

/** Measured in a container (BENCHMARKS.md, "Image"): everything runs with these two. */
const MEASURED_CAPABILITIES = new Set(['NET_ADMIN', 'SYS_ADMIN']);

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked field by field below
type Obj = Record<string, any>;

function load(): Obj[] {
  const out: Obj[] = [];
  for (const f of readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
    for (const d of parseAllDocuments(readFileSync(join(DEPLOY, f), 'utf8'))) {
      assert.equal(d.errors.length, 0, `${f}: ${d.errors[0]?.message}`);
      const o = d.toJS() as Obj | null;
      if (o) out.push({ ...o, __file: f });
    }
  }
  return out;
}

function walk(v: unknown, path: string, visit: (path: string, key: string, value: unknown) => void): void {
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      walk(x, `${path}[${i}]`, visit);
    });
  } else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      visit(path, k, x);
      walk(x, `${path}.${k}`, visit);
    }
  }
}

const objects = load();
const daemonSet = objects.find((o) => o.kind === 'DaemonSet')!;
const pod = daemonSet.spec.template.spec;

test('deploy/: the kustomization lists every manifest, and kubectl can build it', () => {
  const k = parseAllDocuments(readFileSync(join(DEPLOY, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as Obj;
  const files = readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  assert.deepEqual([...k.resources].sort(), files.sort());
  assert.deepEqual(objects.map((o) => o.kind).sort(), [
    'ClusterRole',
    'ClusterRoleBinding',
    'DaemonSet',
    'Namespace',
    'ServiceAccount',
  ]);
  let kubectl = true;
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
  } catch {
    kubectl = false;
  }
  if (kubectl) {
    const out = execFileSync('kubectl', ['kustomize', DEPLOY], { encoding: 'utf8' });
    assert.equal(out.match(/^kind: /gm)?.length, 5);
  }
});

test('deploy/: nothing privileged, capabilities only the measured set, everything else dropped', () => {
  walk(objects, '', (path, key, value) => {
    assert.ok(!(key === 'privileged' && value === true), `${path}.privileged is true`);
    assert.ok(!(key === 'allowPrivilegeEscalation' && value === true), `${path}.allowPrivilegeEscalation`);
    if (key === 'capabilities') {
      const add = (value as Obj).add ?? [];
      for (const c of add)
        assert.ok(MEASURED_CAPABILITIES.has(c), `${path}: capability ${c} is not in the measured set`);
      assert.deepEqual((value as Obj).drop, ['ALL'], `${path}: must drop ALL`);
    }
  });
  for (const c of pod.containers) {
    assert.ok(
      c.securityContext?.capabilities,
      `${c.name}: capabilities not set (the runtime's defaults would apply)`,
    );
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
    assert.equal(
      c.securityContext.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type,
      'RuntimeDefault',
    );
  }
});

test('deploy/: probes on /livez and /readyz, requests and a memory limit on every container', () => {
  for (const c of pod.containers) {
    assert.equal(c.livenessProbe?.httpGet?.path, '/livez', `${c.name}: liveness probe`);
    assert.equal(c.readinessProbe?.httpGet?.path, '/readyz', `${c.name}: readiness probe`);
    const port = c.args[c.args.indexOf('--metrics-port') + 1];
    assert.equal(String(c.livenessProbe.httpGet.port), port, 'probes on the metrics port');
    assert.equal(String(c.readinessProbe.httpGet.port), port);
    assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${c.name}: requests`);
    assert.ok(c.resources?.limits?.memory, `${c.name}: memory limit`);
  }
});

test('deploy/: a node agent: host network, every taint tolerated, node-critical, hostPath flow logs, bpffs and spool, no ConfigMap', () => {
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.ok(
    pod.tolerations.some(
      (t: Obj) => t.operator === 'Exists' && t.key === undefined && t.effect === undefined,
    ),
  );
  const vols = Object.fromEntries(pod.volumes.map((v: Obj) => [v.name, v]));
  const mounts = Object.fromEntries(pod.containers[0].volumeMounts.map((m: Obj) => [m.mountPath, m.name]));
  assert.equal(vols[mounts['/var/log/calico/flowlogs']].hostPath.path, '/var/log/calico/flowlogs');
  assert.equal(vols[mounts['/sys/fs/bpf']].hostPath.path, '/sys/fs/bpf');
  // The spool directory's default, on the node (a pod restart replays what is unacknowledged).
  const spool = SHIP_DEFAULTS.spoolDirectory as string;
  assert.equal(vols[mounts[spool]]?.hostPath?.path, spool);
  // Pinned maps and the drain journal outlive the pod (issue 14 item 10): each setting
  // names a directory under a hostPath mount, the pins under the host's bpffs.
  const env = Object.fromEntries(pod.containers[0].env.map((e: Obj) => [e.name, e.value]));
  for (const [name, under] of [
    ['FLOWLOGD_BPF_PIN_DIRECTORY', '/sys/fs/bpf'],
    ['FLOWLOGD_STATE_DIRECTORY', '/var/lib/flowlogd/state'],
  ] as const) {
    assert.ok(
      SETTINGS.some((d) => d.env === name),
      `${name} is a setting`,
    );
    const dir = String(env[name]);
    assert.ok(dir === under || dir.startsWith(`${under}/`), `${name}=${dir} under ${under}`);
    assert.equal(vols[mounts[under]].hostPath.path, under, `${under} is the node's`);
  }
  assert.ok(!pod.volumes.some((v: Obj) => v.configMap), 'no ConfigMap');
  assert.equal(pod.serviceAccountName, objects.find((o) => o.kind === 'ServiceAccount')!.metadata.name);
});

test('deploy/: the ClusterRole is get/list/watch on exactly the resources flowlogd lists and watches', () => {
  const role = objects.find((o) => o.kind === 'ClusterRole')!;
  const granted = new Set<string>();
  for (const r of role.rules) {
    assert.deepEqual([...r.verbs].sort(), ['get', 'list', 'watch'], `verbs ${r.verbs}`);
    assert.equal(r.resourceNames, undefined);
    for (const g of r.apiGroups) for (const res of r.resources) granted.add(`${g}/${res}`);
  }
  const read = new Set<string>();
  for (const spec of [...DAEMON_RESOURCES, FELIX_CONFIGURATION_RESOURCE]) {
    for (const p of spec.paths) {
      const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/([^/]+)$/.exec(p);
      assert.ok(m, `unexpected path ${p}`);
      read.add(`${m[1] ?? ''}/${m[2]}`);
    }
  }
  assert.deepEqual([...granted].sort(), [...read].sort());
  const binding = objects.find((o) => o.kind === 'ClusterRoleBinding')!;
  assert.equal(binding.roleRef.name, role.metadata.name);
  assert.equal(binding.subjects[0].namespace, daemonSet.metadata.namespace);
});
