// `node src/lab/fake-apiserver-main.ts KUBECONFIG_OUT [PODS_JSON]`: runs the fake API
// server (fake-apiserver.ts) on 127.0.0.1 until killed, with the core collections and
// FelixConfiguration served, the given pods (a JSON array of {name, namespace, ip,
// generateName?, labels?}) and a FelixConfiguration `default` with a 2 s flush interval
// and kind 0; writes its kubeconfig to KUBECONFIG_OUT. For scripts/image-smoke.sh.
import { writeFileSync } from 'node:fs';
import { FakeApiServer } from './fake-apiserver.ts';

const [out, podsJson] = process.argv.slice(2);
if (!out) throw new Error('usage: fake-apiserver-main.ts KUBECONFIG_OUT [PODS_JSON]');
const api = await FakeApiServer.start();
for (const [path, kind] of [
  ['/api/v1/pods', 'Pod'],
  ['/api/v1/services', 'Service'],
  ['/api/v1/namespaces', 'Namespace'],
  ['/api/v1/nodes', 'Node'],
] as const) {
  api.serve(path, 'v1', kind);
}
api.serve(
  '/apis/crd.projectcalico.org/v1/felixconfigurations',
  'crd.projectcalico.org/v1',
  'FelixConfiguration',
);
api.put('/apis/crd.projectcalico.org/v1/felixconfigurations', {
  metadata: { name: 'default' },
  spec: { flowLogsFlushInterval: '2s', flowLogsFileAggregationKindForAllowed: 0 },
});
const pods = JSON.parse(podsJson ?? '[]') as {
  name: string;
  namespace: string;
  ip: string;
  generateName?: string;
  labels?: Record<string, string>;
}[];
for (const p of pods) {
  api.put('/api/v1/pods', {
    metadata: { name: p.name, namespace: p.namespace, generateName: p.generateName, labels: p.labels ?? {} },
    spec: { nodeName: 'node-1' },
    status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] },
  });
}
writeFileSync(out, api.kubeconfig());
process.stdout.write(`${JSON.stringify({ url: api.url, kubeconfig: out })}\n`);
process.on('SIGTERM', () => {
  void api.close().then(() => process.exit(0));
});
