// A small "cluster" on top of the netns lab: ReplicaSets of pods with Kubernetes
// metadata (generateName, labels, IPs), written as the List `kubectl get ... -o yaml`
// prints, plus pods the metadata does not know (unknown peers).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dump } from 'js-yaml';
import type { Lab, Pod } from './lab.ts';

export interface ReplicaSet {
  namespace: string;
  generateName: string;
  labels: Record<string, string>;
  pods: Pod[];
}

export class Cluster {
  readonly lab: Lab;
  readonly nodeName: string;
  readonly replicaSets: ReplicaSet[] = [];
  readonly unknown: Pod[] = [];
  readonly services: object[] = [];

  constructor(lab: Lab, nodeName: string) {
    this.lab = lab;
    this.nodeName = nodeName;
  }

  /** `count` pods named `<app>-<hash>-<5 chars>`, labelled app, tier and a per-pod label. */
  addReplicaSet(namespace: string, app: string, tier: string, count: number): ReplicaSet {
    const hash = randomBytes(5).toString('hex');
    const generateName = `${app}-${hash}-`;
    const rs: ReplicaSet = {
      namespace,
      generateName,
      labels: { app, tier, 'pod-template-hash': hash },
      pods: [],
    };
    for (let i = 0; i < count; i++) {
      const name = `${generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
      rs.pods.push(
        this.lab.addPod({
          namespace,
          name,
          generateName,
          labels: { ...rs.labels, [`${this.lab.prefix}/pod`]: String(i) },
        }),
      );
    }
    this.replicaSets.push(rs);
    return rs;
  }

  /** A pod the metadata will not list: it shows as `net`. */
  addUnknown(): Pod {
    const pod = this.lab.addPod({
      namespace: '-',
      name: `${this.lab.prefix}-unknown-${this.unknown.length}`,
    });
    this.unknown.push(pod);
    return pod;
  }

  addService(
    namespace: string,
    name: string,
    clusterIP: string,
    ports: { name?: string; port: number; targetPort: number; protocol?: string }[],
  ) {
    this.services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace },
      spec: { clusterIP, clusterIPs: [clusterIP], ports: ports.map((p) => ({ protocol: 'TCP', ...p })) },
    });
  }

  /** The List of pods, services, namespaces and the node, as kubectl prints it. */
  metadata(): object {
    const pods = this.replicaSets.flatMap((rs) =>
      rs.pods.map((p) => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: p.name, namespace: p.namespace, generateName: p.generateName, labels: p.labels },
        spec: { nodeName: this.nodeName },
        status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
      })),
    );
    const namespaces = [...new Set(this.replicaSets.map((rs) => rs.namespace))].map((n) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: n },
    }));
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.nodeName },
      status: { addresses: [{ type: 'Hostname', address: this.nodeName }] },
    };
    return { apiVersion: 'v1', kind: 'List', items: [...pods, ...this.services, ...namespaces, node] };
  }

  writeMetadata(path: string): void {
    writeFileSync(path, dump(this.metadata(), { skipInvalid: true }));
  }
}
