import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EndpointResolver, NET_PUB, NET_PVT } from '../../../src/enrich/resolver.ts';
import { metadata, pod } from '../aggregate/helpers.ts';

const T = 1_700_000_000_000;

function resolver(opts: Partial<ConstructorParameters<typeof EndpointResolver>[0]> = {}) {
  return new EndpointResolver({
    nodeName: 'node1',
    hostEndpoints: true,
    networkSets: true,
    historyMs: 600_000,
    ...opts,
  });
}

test('wep, hep, ns (longest prefix), net', () => {
  const r = resolver();
  r.update(
    metadata({
      pods: [pod('web', 'nginx-1', '10.0.0.5', 'nginx-', { app: 'nginx' })],
      nodes: [{ name: 'node2', labels: { zone: 'b' }, ips: ['192.168.1.11'] }],
      networkSets: [
        { name: 'wide', namespace: null, labels: {}, nets: ['198.51.0.0/16'] },
        { name: 'narrow', namespace: 'web', labels: { n: '1' }, nets: ['198.51.100.0/24'] },
      ],
    }),
    T,
  );
  assert.deepEqual(r.resolve('10.0.0.5', T), {
    type: 'wep',
    name: 'nginx-1',
    nameAggr: 'nginx-*',
    namespace: 'web',
    labels: { app: 'nginx' },
  });
  assert.deepEqual(r.resolve('192.168.1.11', T), {
    type: 'hep',
    name: 'node2',
    nameAggr: 'node2',
    namespace: '-',
    labels: { zone: 'b' },
  });
  assert.deepEqual(
    [
      r.resolve('198.51.100.9', T).nameAggr,
      r.resolve('198.51.100.9', T).namespace,
      r.resolve('198.51.7.1', T).nameAggr,
    ],
    ['narrow', 'web', 'wide'],
  );
  assert.equal(r.resolve('198.51.7.1', T).namespace, '-');
  assert.equal(r.resolve('10.9.9.9', T), NET_PVT);
  assert.equal(r.resolve('1.1.1.1', T), NET_PUB);
});

test('network sets off and host endpoints off resolve to net', () => {
  const r = resolver({ hostEndpoints: false, networkSets: false, nodeIps: ['192.168.1.10'] });
  r.update(
    metadata({
      nodes: [{ name: 'node1', labels: {}, ips: ['192.168.1.12'] }],
      networkSets: [{ name: 's', namespace: null, labels: {}, nets: ['8.8.8.0/24'] }],
    }),
    T,
  );
  assert.equal(r.resolve('192.168.1.12', T), NET_PVT);
  assert.equal(r.resolve('192.168.1.10', T), NET_PVT);
  assert.equal(r.resolve('8.8.8.8', T), NET_PUB);
  // Own node IPs are known from options and from the Node object named like this node.
  assert.equal(r.isNodeIp('192.168.1.10'), true);
  assert.equal(r.isNodeIp('192.168.1.12'), true);
  assert.equal(r.isNodeIp('192.168.1.13'), false);
});

test('no metadata: the node own IPs are the host endpoint, everything else is net', () => {
  const r = resolver({ nodeIps: ['192.168.1.10', 'FD00::10'] });
  assert.deepEqual(
    [r.resolve('192.168.1.10', T).type, r.resolve('192.168.1.10', T).name, r.resolve('fd00::10', T).type],
    ['hep', 'node1', 'hep'],
  );
  assert.equal(r.resolve('10.0.0.1', T), NET_PVT);
  assert.equal(r.isNodeIp('fd00:0::10'), true);
});

test('IP moves: resolution by time, history bounded', () => {
  const r = resolver({ historyMs: 100_000 });
  r.update(metadata({ pods: [pod('ns', 'a', '10.0.0.7', 'a-')] }), T);
  r.update(metadata({ pods: [] }), T + 10_000); // a deleted
  r.update(metadata({ pods: [pod('ns', 'b', '10.0.0.7', 'b-')] }), T + 20_000); // b gets the IP
  assert.equal(r.resolve('10.0.0.7', T - 999_999).name, 'a'); // before the first load: first holder
  assert.equal(r.resolve('10.0.0.7', T + 5_000).name, 'a');
  assert.equal(r.resolve('10.0.0.7', T + 15_000), NET_PVT); // held by nothing then
  assert.equal(r.resolve('10.0.0.7', T + 25_000).name, 'b');
  // An unchanged reload does not add history.
  r.update(metadata({ pods: [pod('ns', 'b', '10.0.0.7', 'b-')] }), T + 30_000);
  assert.equal(r.resolve('10.0.0.7', T + 5_000).name, 'a');
  // Far later, old assignments are pruned: the one in effect at the cutoff is kept.
  r.update(metadata({ pods: [pod('ns', 'b', '10.0.0.7', 'b-')] }), T + 500_000);
  assert.equal(r.resolve('10.0.0.7', T + 5_000).name, 'b');
  // A deleted pod's IP is forgotten after the history window.
  r.update(metadata({ pods: [] }), T + 600_000);
  assert.equal(r.trackedIps, 1);
  r.update(metadata({ pods: [] }), T + 800_000);
  assert.equal(r.trackedIps, 0);
});

test('service lookup by cluster IP, port and protocol', () => {
  const r = resolver();
  r.update(
    metadata({
      services: [
        {
          name: 'dns',
          namespace: 'kube-system',
          clusterIps: ['10.96.0.10', 'fd00:96::a'],
          ports: [
            { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
            { name: '', port: 53, protocol: 'TCP', targetPort: 53 },
          ],
        },
      ],
    }),
    T,
  );
  assert.deepEqual(r.service('10.96.0.10', 53, 17), {
    namespace: 'kube-system',
    name: 'dns',
    portName: 'dns',
    port: 53,
  });
  assert.equal(r.service('10.96.0.10', 53, 6)?.portName, '');
  assert.equal(r.service('fd00:96:0::a', 53, 17)?.name, 'dns');
  assert.equal(r.service('10.96.0.10', 54, 17), null);
  assert.equal(r.service('10.96.0.10', 53, 1), null);
});

test('a pod absent from the metadata for longer than the history window is named again (issue 14 item 2)', () => {
  // The window is 2 × a 2 s flush interval; pod b is missing from 100 s to 106 s.
  const r = resolver({ historyMs: 4_000 });
  const a = pod('ns', 'a', '10.0.0.1', 'a-');
  const b = pod('ns', 'b', '10.0.0.2', 'b-');
  r.update(metadata({ pods: [a, b] }), 1_000);
  r.update(metadata({ pods: [a] }), 100_000);
  r.update(metadata({ pods: [a, b] }), 106_000);
  // A connection first seen at 5 s, while b held the IP, is b's for its whole life.
  assert.equal(r.resolve('10.0.0.2', 5_000).name, 'b');
  assert.equal(r.resolve('10.0.0.2', 103_000), NET_PVT); // nobody held it during the gap
  assert.equal(r.resolve('10.0.0.2', 106_000).name, 'b');
  // Once the gap itself is older than the window, only the returned assignment is kept,
  // and it covers times before it (the first holder is assumed).
  r.update(metadata({ pods: [a, b] }), 200_000);
  assert.equal(r.resolve('10.0.0.2', 5_000).name, 'b');
  assert.equal(r.resolve('10.0.0.2', 150_000).name, 'b');

  // An IP that moved to another pod after a gap: the old holder keeps its old traffic.
  const c = pod('ns', 'c', '10.0.0.2', 'c-');
  r.update(metadata({ pods: [a] }), 300_000);
  r.update(metadata({ pods: [a, c] }), 306_000);
  assert.equal(r.resolve('10.0.0.2', 250_000).name, 'b');
  assert.equal(r.resolve('10.0.0.2', 307_000).name, 'c');
});
