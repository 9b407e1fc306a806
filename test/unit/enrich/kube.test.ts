import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MetadataParseError, parseClusterMetadata } from '../../../src/enrich/kube.ts';

const LIST_YAML = `
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: nginx-86c57db685-abcde
    namespace: web
    generateName: nginx-86c57db685-
    labels: {app: nginx, pod-template-hash: 86c57db685}
  spec: {nodeName: node1}
  status:
    podIP: 10.244.1.5
    podIPs: [{ip: 10.244.1.5}, {ip: "FD00:10:244:1::5"}]
- apiVersion: v1
  kind: Pod
  metadata: {name: kube-proxy-x, namespace: kube-system, generateName: kube-proxy-}
  spec: {nodeName: node1, hostNetwork: true}
  status: {podIP: 192.168.1.10, podIPs: [{ip: 192.168.1.10}]}
- apiVersion: v1
  kind: Service
  metadata: {name: nginx, namespace: web}
  spec:
    clusterIP: 10.96.0.20
    clusterIPs: [10.96.0.20, "fd00:96::20"]
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
    - {port: 53, protocol: UDP, targetPort: dns}
- apiVersion: v1
  kind: Service
  metadata: {name: headless, namespace: web}
  spec: {clusterIP: None, ports: [{port: 80}]}
- apiVersion: v1
  kind: Node
  metadata: {name: node1, labels: {zone: a}}
  status:
    addresses:
    - {type: InternalIP, address: 192.168.1.10}
    - {type: Hostname, address: node1}
    - {type: ExternalIP, address: 203.0.113.7}
- apiVersion: v1
  kind: Namespace
  metadata: {name: web, labels: {team: x}}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata: {name: corp, labels: {net: corp}}
  spec: {nets: [198.51.100.0/24, bogus]}
- kind: Pod
  metadata: {}
`;

test('parses a kubectl List: pods (v4+v6, hostNetwork), services, nodes, namespaces, network sets', () => {
  const { metadata: md, warnings } = parseClusterMetadata(LIST_YAML, 'f.yaml');
  assert.deepEqual(md.pods[0], {
    name: 'nginx-86c57db685-abcde',
    namespace: 'web',
    generateName: 'nginx-86c57db685-',
    labels: { app: 'nginx', 'pod-template-hash': '86c57db685' },
    ips: ['10.244.1.5', 'fd00:10:244:1::5'],
    nodeName: 'node1',
    hostNetwork: false,
    containerPorts: [],
    serviceAccount: 'default',
  });
  assert.equal(md.pods[1]!.hostNetwork, true);
  assert.deepEqual(md.pods[1]!.ips, []);
  assert.deepEqual(md.services[0], {
    name: 'nginx',
    namespace: 'web',
    clusterIps: ['10.96.0.20', 'fd00:96::20'],
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
      { name: '', port: 53, protocol: 'UDP', targetPort: 'dns' },
    ],
  });
  assert.deepEqual(md.services[1]!.clusterIps, []);
  assert.deepEqual(md.nodes, [
    { name: 'node1', labels: { zone: 'a' }, ips: ['192.168.1.10', '203.0.113.7'] },
  ]);
  assert.deepEqual(md.namespaces, [{ name: 'web', labels: { team: 'x' } }]);
  assert.deepEqual(md.networkSets, [
    { name: 'corp', namespace: null, labels: { net: 'corp' }, nets: ['198.51.100.0/24'] },
  ]);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!, /invalid CIDR "bogus"/);
  assert.match(warnings[1]!, /item 7 .*skipped/);
});

test('accepts JSON, multi-document YAML and a bare array', () => {
  const pod = { kind: 'Pod', metadata: { name: 'p', namespace: 'n' }, status: { podIP: '10.0.0.1' } };
  const json = parseClusterMetadata(JSON.stringify({ kind: 'List', items: [pod] })).metadata;
  assert.deepEqual(
    json.pods.map((p) => p.ips),
    [['10.0.0.1']],
  );
  const arr = parseClusterMetadata(JSON.stringify([pod, pod])).metadata;
  assert.equal(arr.pods.length, 2);
  const multi = parseClusterMetadata(
    'kind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.1}\n---\nkind: PodList\nitems:\n- kind: Pod\n  metadata: {name: b}\n',
  ).metadata;
  assert.deepEqual(
    multi.pods.map((p) => [p.name, p.namespace]),
    [
      ['a', 'default'],
      ['b', 'default'],
    ],
  );
});

test('unreadable documents throw MetadataParseError naming the source', () => {
  assert.throws(
    () => parseClusterMetadata('{"kind": ', 'x.json'),
    (e: Error) => {
      assert.ok(e instanceof MetadataParseError);
      assert.match(e.message, /^x\.json: invalid JSON/);
      return true;
    },
  );
  assert.throws(
    () => parseClusterMetadata('a: [1, 2\nb: c', 'y.yaml'),
    /^MetadataParseError: y\.yaml: invalid YAML|y\.yaml: invalid YAML/,
  );
});

test('a finished pod (Succeeded/Failed) keeps no IP: its podIP may belong to a running pod now', () => {
  const { metadata } = parseClusterMetadata(`
kind: List
items:
- {kind: Pod, metadata: {name: job-1-x, namespace: batch}, status: {phase: Succeeded, podIP: 10.244.1.9}}
- {kind: Pod, metadata: {name: job-2-y, namespace: batch}, status: {phase: Failed, podIP: 10.244.1.9}}
- {kind: Pod, metadata: {name: web-1, namespace: web}, status: {phase: Running, podIP: 10.244.1.9}}
`);
  assert.deepEqual(
    metadata.pods.map((p) => [p.name, p.ips]),
    [
      ['job-1-x', []],
      ['job-2-y', []],
      ['web-1', ['10.244.1.9']],
    ],
  );
});

test('named container ports, the service account and policy objects are kept for the policy stage', () => {
  const { metadata, warnings } = parseClusterMetadata(`
kind: List
items:
- kind: Pod
  metadata: {name: nginx-1, namespace: web}
  spec:
    serviceAccountName: web-sa
    containers:
    - name: c
      ports: [{name: http, containerPort: 80}, {containerPort: 81}, {name: dns, containerPort: 53, protocol: udp}]
    initContainers:
    - {name: i, ports: [{name: init-port, containerPort: 9, protocol: SCTP}]}
  status: {podIP: 10.0.0.1}
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: np, namespace: web}, spec: {podSelector: {}}}
- {apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {}}
- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: security}, spec: {order: 100}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: web-sa, namespace: web}}
- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d}}
`);
  assert.deepEqual(warnings, []);
  assert.deepEqual(metadata.pods[0]!.containerPorts, [
    { name: 'http', port: 80, protocol: 'TCP' },
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'init-port', port: 9, protocol: 'SCTP' },
  ]);
  assert.equal(metadata.pods[0]!.serviceAccount, 'web-sa');
  assert.deepEqual(
    (metadata.policyObjects ?? []).map((o) => (o as { kind: string }).kind),
    ['NetworkPolicy', 'GlobalNetworkPolicy', 'Tier', 'ServiceAccount'],
  );
});

test('EndpointSlices in a metadata file: for the policy stage, slimmed to addresses and ports; FQDN slices carry none', () => {
  const yaml = `apiVersion: v1
kind: List
items:
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: nginx-x1
    namespace: web
    labels: { kubernetes.io/service-name: nginx }
    managedFields: [{ manager: kube-controller-manager }]
  addressType: IPv6
  endpoints:
  - addresses: ["FD00:0:0::1"]
    conditions: { ready: false }
    targetRef: { kind: Pod, name: nginx-1 }
  - addresses: ["not-an-ip"]
  ports:
  - { name: http, port: 80, protocol: TCP }
  - { name: any }
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: { name: ext-x1, namespace: web, labels: { kubernetes.io/service-name: ext } }
  addressType: FQDN
  endpoints: [{ addresses: [example.com] }]
  ports: [{ port: 443, protocol: TCP }]
`;
  const { metadata: md, warnings } = parseClusterMetadata(yaml, 'f.yaml');
  assert.deepEqual(warnings, ['f.yaml: item 0 (EndpointSlice nginx-x1): ignoring invalid IP "not-an-ip"']);
  assert.deepEqual(md.policyObjects, [
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'nginx-x1', namespace: 'web', labels: { 'kubernetes.io/service-name': 'nginx' } },
      spec: { addresses: ['fd00::1'], ports: [{ port: 80, protocol: 'TCP' }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'ext-x1', namespace: 'web', labels: { 'kubernetes.io/service-name': 'ext' } },
      spec: { addresses: [], ports: [{ port: 443, protocol: 'TCP' }] },
    },
  ]);
});
