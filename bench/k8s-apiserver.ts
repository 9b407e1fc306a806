// The fake API server of bench/k8s.bench.ts, in its own process so that its objects and
// its CPU are not the measured process's. Driven over IPC (child_process.fork):
//   → { populate: { pods, services, nodes, namespaces } }   ← { ready: { kubeconfig } }
//   → { churn: { events } }                                 ← { churned: { events, ms } }
import { FakeApiServer } from '../src/lab/fake-apiserver.ts';

const PODS = '/api/v1/pods';

/** A pod as the API serves it: the fields flowlogd reads plus the usual bulk it does not. */
function podName(i: number): string {
  return `app${i % 5000}-7d9f8c6b5-${i.toString(36)}`;
}

function pod(i: number, gen: number, name = podName(i)): Record<string, unknown> {
  const rs = i % 5000;
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return {
    metadata: {
      name,
      namespace: `ns${rs % 500}`,
      generateName: `app${rs}-7d9f8c6b5-`,
      uid: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
      labels: {
        app: `app${rs}`,
        'pod-template-hash': '7d9f8c6b5',
        tier: rs % 2 ? 'frontend' : 'backend',
        gen: String(gen),
      },
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `app${rs}-7d9f8c6b5`, uid: 'x', controller: true },
      ],
      creationTimestamp: '2026-12-01T00:00:00Z',
    },
    spec: {
      nodeName: `node-${i % 1000}`,
      containers: [
        {
          name: 'app',
          image: `registry.example/app${rs}:1.2.3`,
          ports: [{ containerPort: 8080, protocol: 'TCP' }],
          resources: { requests: { cpu: '100m', memory: '128Mi' } },
          env: [{ name: 'MODE', value: 'production' }],
        },
      ],
      serviceAccountName: 'default',
      restartPolicy: 'Always',
    },
    status: {
      phase: 'Running',
      hostIP: `192.168.${(i % 1000) >> 8}.${(i % 1000) & 255}`,
      podIP: ip,
      podIPs: [{ ip }],
      conditions: [
        { type: 'Ready', status: 'True', lastTransitionTime: '2026-12-01T00:00:05Z' },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: '2026-12-01T00:00:05Z' },
      ],
      containerStatuses: [
        { name: 'app', ready: true, restartCount: 0, image: `registry.example/app${rs}:1.2.3` },
      ],
      startTime: '2026-12-01T00:00:00Z',
    },
  };
}

let api: FakeApiServer | null = null;
let pods = 0;
let current: string[] = [];

process.on('message', async (m: { populate?: Record<string, number>; churn?: { events: number } }) => {
  if (m.populate) {
    api = await FakeApiServer.start();
    api.serve(PODS, 'v1', 'Pod');
    api.serve('/api/v1/services', 'v1', 'Service');
    api.serve('/api/v1/nodes', 'v1', 'Node');
    api.serve('/api/v1/namespaces', 'v1', 'Namespace');
    pods = m.populate.pods!;
    current = Array.from({ length: pods }, (_, i) => podName(i));
    for (let i = 0; i < pods; i++) api.put(PODS, pod(i, 0));
    for (let i = 0; i < m.populate.services!; i++) {
      api.put('/api/v1/services', {
        metadata: { name: `svc${i}`, namespace: `ns${i % 500}`, labels: { app: `app${i}` } },
        spec: {
          clusterIP: `10.96.${i >> 8}.${i & 255}`,
          clusterIPs: [`10.96.${i >> 8}.${i & 255}`],
          ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
          selector: { app: `app${i}` },
          type: 'ClusterIP',
        },
      });
    }
    for (let i = 0; i < m.populate.nodes!; i++) {
      api.put('/api/v1/nodes', {
        metadata: { name: `node-${i}`, labels: { 'kubernetes.io/hostname': `node-${i}`, zone: `z${i % 3}` } },
        status: { addresses: [{ type: 'InternalIP', address: `192.168.${i >> 8}.${i & 255}` }] },
      });
    }
    for (let i = 0; i < m.populate.namespaces!; i++)
      api.put('/api/v1/namespaces', { metadata: { name: `ns${i}` } });
    process.send!({ ready: { kubeconfig: api.kubeconfig() } });
  }
  if (m.churn && api) {
    // Pod churn as a rollout makes it: a pod deleted, its replacement created on the
    // same IP (the IP-history case), and a label change; all written as fast as the
    // server can, so the receiving side's rate is what is measured.
    const t0 = performance.now();
    let events = 0;
    let gen = 1;
    for (let i = 0; events < m.churn.events; i = (i + 1) % pods) {
      const name = current[i]!;
      if (i % 3 === 0) {
        api.put(PODS, pod(i, gen, name)); // MODIFIED: new labels
        events++;
      } else {
        const ns = (pod(i, gen, name).metadata as Record<string, unknown>).namespace as string;
        if (!api.remove(PODS, ns, name)) throw new Error(`no pod ${ns}/${name}`);
        current[i] = `${podName(i)}-r${gen}`;
        api.put(PODS, pod(i, gen, current[i])); // the replacement, same IP
        events += 2;
      }
      if (i === pods - 1) gen++;
      if (i % 500 === 0) await new Promise((r) => setImmediate(r)); // let the sockets drain
    }
    process.send!({ churned: { events, ms: performance.now() - t0 } });
  }
});
process.on('disconnect', () => {
  void api?.close();
  process.exit(0);
});
