// Policy kinds from the Kubernetes API: the informer entries of POLICY_RESOURCES give the
// policy stage the objects with their kind and apiVersion (list items carry neither), so a
// Kubernetes and a Calico NetworkPolicy stay apart, and a watch event changes the trace.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { METADATA_RESOURCES, POLICY_RESOURCES } from '../../../src/enrich/k8s-kinds.ts';
import { KubeMetadataSource } from '../../../src/enrich/k8s-source.ts';
import type { ClusterMetadata } from '../../../src/enrich/kube.ts';
import { EndpointResolver } from '../../../src/enrich/resolver.ts';
import { FakeApiServer } from '../../../src/lab/fake-apiserver.ts';
import { PolicyEngine } from '../../../src/policy/engine.ts';

const PODS = '/api/v1/pods';
const KNP = '/apis/networking.k8s.io/v1/networkpolicies';
const CALICO_NP = '/apis/crd.projectcalico.org/v1/networkpolicies';
const GNP = '/apis/projectcalico.org/v3/globalnetworkpolicies';
const TIERS = '/apis/crd.projectcalico.org/v1/tiers';

let api: FakeApiServer;
before(async () => {
  api = await FakeApiServer.start();
});
after(() => api.close());

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('policy kinds from the API: kinds and apiVersions set, traces follow watch events', async () => {
  for (const [p, v, k] of [
    [PODS, 'v1', 'Pod'],
    ['/api/v1/namespaces', 'v1', 'Namespace'],
    [KNP, 'networking.k8s.io/v1', 'NetworkPolicy'],
    [CALICO_NP, 'crd.projectcalico.org/v1', 'NetworkPolicy'],
    [GNP, 'projectcalico.org/v3', 'GlobalNetworkPolicy'],
    [TIERS, 'crd.projectcalico.org/v1', 'Tier'],
  ] as const)
    api.serve(p, v, k);
  for (const [name, ip, app] of [
    ['nginx', '10.1.0.1', 'nginx'],
    ['client', '10.1.0.2', 'client'],
  ])
    api.put(PODS, {
      metadata: { name, namespace: 'web', labels: { app } },
      spec: { nodeName: 'node-1', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 80 }] }] },
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    });
  api.put(KNP, {
    metadata: { name: 'allow-client', namespace: 'web', managedFields: [{ manager: 'kubectl' }] },
    spec: {
      podSelector: { matchLabels: { app: 'nginx' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 'http' }] }],
    },
  });
  api.put(CALICO_NP, {
    metadata: { name: 'default.calico-np', namespace: 'web' },
    spec: { tier: 'default', order: 2000, selector: "app == 'nginx'", ingress: [{ action: 'Deny' }] },
  });
  api.put(TIERS, { metadata: { name: 'security' }, spec: { order: 100 } });

  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  const resolver = new EndpointResolver({
    nodeName: 'node-1',
    hostEndpoints: false,
    networkSets: false,
    historyMs: 60_000,
  });
  const engine = new PolicyEngine();
  const seen: ClusterMetadata[] = [];
  const src = new KubeMetadataSource(kc, {
    coalesceMs: 5,
    informer: { backoffMs: [20, 100] },
    resources: [...METADATA_RESOURCES, ...POLICY_RESOURCES],
  });
  await src.start((md) => {
    seen.push(md);
    resolver.update(md, Date.now());
    engine.update(md, 'api');
  });
  const trace = (port: number) =>
    engine.evaluate(
      'ingress',
      resolver.resolve('10.1.0.2', Date.now()),
      resolver.resolve('10.1.0.1', Date.now()),
      '10.1.0.2',
      '10.1.0.1',
      6,
      40000,
      port,
    ).enforced_policies;
  try {
    const objs = (seen.at(-1)!.policyObjects ?? []) as {
      apiVersion: string;
      kind: string;
      metadata: object;
    }[];
    assert.deepEqual(objs.map((o) => [o.kind, o.apiVersion]).sort(), [
      ['NetworkPolicy', 'networking.k8s.io/v1'],
      ['NetworkPolicy', 'projectcalico.org/v3'],
      ['Tier', 'projectcalico.org/v3'],
    ]);
    // Slim: no managedFields kept.
    assert.deepEqual(objs.find((o) => o.apiVersion === 'networking.k8s.io/v1')!.metadata, {
      name: 'allow-client',
      namespace: 'web',
      labels: {},
    });
    assert.deepEqual(trace(80), ['0|default|web/knp.default.allow-client|allow|0']);
    assert.deepEqual(trace(81), ['0|default|web/default.calico-np|deny|0']);

    api.put(GNP, {
      metadata: { name: 'security.block' },
      spec: {
        tier: 'security',
        selector: 'all()',
        ingress: [{ action: 'Deny', source: { nets: ['10.1.0.2/32'] } }],
      },
    });
    await waitFor('the GNP from the watch', () => trace(80)[0] === '0|security|security.block|deny|0');
    api.remove(GNP, null, 'security.block');
    await waitFor('the GNP deleted', () => trace(80)[0] === '0|default|web/knp.default.allow-client|allow|0');
  } finally {
    src.close();
  }
});

test('EndpointSlices from the API: a destination.services rule follows the slice as it is watched', async () => {
  const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
  const SERVICES = '/api/v1/services';
  const local = await FakeApiServer.start();
  for (const [p, v, k] of [
    [PODS, 'v1', 'Pod'],
    [SERVICES, 'v1', 'Service'],
    [SLICES, 'discovery.k8s.io/v1', 'EndpointSlice'],
    [GNP, 'projectcalico.org/v3', 'GlobalNetworkPolicy'],
  ] as const)
    local.serve(p, v, k);
  for (const [name, ip, app] of [
    ['nginx', '10.1.0.1', 'nginx'],
    ['client', '10.1.0.2', 'client'],
  ])
    local.put(PODS, {
      metadata: { name, namespace: 'web', labels: { app } },
      spec: { nodeName: 'node-1', containers: [{ name: 'c' }] },
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    });
  local.put(SERVICES, {
    metadata: { name: 'nginx', namespace: 'web' },
    spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ port: 8000, targetPort: 80 }] },
  });
  const sliceObj = (addresses: string[]) => ({
    metadata: { name: 'nginx-x1', namespace: 'web', labels: { 'kubernetes.io/service-name': 'nginx' } },
    addressType: 'IPv4',
    endpoints: addresses.map((a) => ({ addresses: [a] })),
    ports: [{ name: '', port: 80, protocol: 'TCP' }],
  });
  local.put(SLICES, sliceObj(['10.1.0.1']));
  local.put(GNP, {
    metadata: { name: 'to-nginx' },
    spec: {
      selector: "app == 'client'",
      egress: [{ action: 'Allow', destination: { services: { name: 'nginx', namespace: 'web' } } }],
    },
  });
  const kc = new KubeConfig();
  kc.loadFromString(local.kubeconfig());
  const resolver = new EndpointResolver({
    nodeName: 'node-1',
    hostEndpoints: false,
    networkSets: false,
    historyMs: 60_000,
  });
  const engine = new PolicyEngine();
  const src = new KubeMetadataSource(kc, {
    coalesceMs: 5,
    informer: { backoffMs: [20, 100] },
    resources: [...METADATA_RESOURCES, ...POLICY_RESOURCES],
  });
  await src.start((md) => {
    resolver.update(md, Date.now());
    engine.update(md, 'api');
  });
  const trace = (dstIp: string, port: number) =>
    engine.evaluate(
      'egress',
      resolver.resolve('10.1.0.2', Date.now()),
      resolver.resolve(dstIp, Date.now()),
      '10.1.0.2',
      dstIp,
      6,
      40000,
      port,
    ).enforced_policies;
  const ALLOW = ['0|default|default.to-nginx|allow|0'];
  const END = ['0|default|default.to-nginx|deny|-1'];
  try {
    assert.deepEqual(trace('10.1.0.1', 80), ALLOW);
    assert.deepEqual(trace('10.96.0.10', 8000), ALLOW);
    assert.deepEqual(trace('10.1.0.1', 8000), END);
    // The endpoint moves to another address: the old one no longer matches, nor the cluster IP once empty.
    local.put(SLICES, sliceObj(['10.1.0.9']));
    await waitFor('the slice from the watch', () => trace('10.1.0.1', 80)[0] === END[0]);
    assert.deepEqual(trace('10.1.0.9', 80), ALLOW);
    local.put(SLICES, sliceObj([]));
    await waitFor('the emptied slice', () => trace('10.96.0.10', 8000)[0] === END[0]);
  } finally {
    src.close();
    await local.close();
  }
});
