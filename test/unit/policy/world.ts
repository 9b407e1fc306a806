// A small cluster for policy tests: namespaces, pods with labels and named container
// ports, resolved through the real EndpointResolver, and a PolicyEngine over given
// policy objects. `trace()` returns the three lists without their leading "<index>|"
// (checked to count from 0 here), so tables read as tier|name|action|rule.

import assert from 'node:assert/strict';
import type { ClusterMetadata, ContainerPortMeta, PodMeta, ServiceMeta } from '../../../src/enrich/kube.ts';
import { EndpointResolver } from '../../../src/enrich/resolver.ts';
import { PolicyEngine } from '../../../src/policy/engine.ts';
import type { Direction } from '../../../src/policy/types.ts';

export interface PodDef {
  readonly ip: string;
  readonly labels?: Record<string, string>;
  /** name:port[/proto] */
  readonly ports?: readonly string[];
  readonly sa?: string;
}

export const NAMESPACES: Record<string, Record<string, string>> = {
  web: { team: 'web', env: 'prod' },
  client: { team: 'client', env: 'prod' },
  dev: { env: 'dev' },
  'policy-demo': {},
};

export const PODS: Record<string, PodDef> = {
  'web/nginx-1': {
    ip: '10.0.1.1',
    labels: { app: 'nginx', tier: 'fe' },
    ports: ['http:80', 'metrics:9090', 'dns:53/UDP'],
  },
  'web/api-1': { ip: '10.0.1.2', labels: { app: 'api' }, ports: ['http:8080', 'grpc:9000'], sa: 'api-sa' },
  'web/db-1': {
    ip: '10.0.1.3',
    labels: { app: 'db', role: 'primary' },
    ports: ['pg:5432', 'assoc:7777/SCTP'],
  },
  'client/access-1': { ip: '10.0.2.1', labels: { app: 'access' }, sa: 'reader' },
  'client/other-1': { ip: '10.0.2.2', labels: { app: 'other', version: 'v2' } },
  'dev/access-1': { ip: '10.0.3.1', labels: { app: 'access' } },
  'dev/tool-1': { ip: '10.0.3.2', labels: {} },
  'policy-demo/nginx-1': { ip: '10.0.4.1', labels: { app: 'nginx' }, ports: ['http:80'] },
  'policy-demo/access-1': { ip: '10.0.4.2', labels: { app: 'access' } },
};

const SERVICE_ACCOUNTS = [
  { kind: 'ServiceAccount', metadata: { name: 'api-sa', namespace: 'web', labels: { role: 'backend' } } },
  { kind: 'ServiceAccount', metadata: { name: 'reader', namespace: 'client', labels: { role: 'reader' } } },
];

function podMeta(key: string, d: PodDef): PodMeta {
  const [namespace, name] = key.split('/') as [string, string];
  const containerPorts: ContainerPortMeta[] = (d.ports ?? []).map((p) => {
    const [n, rest] = p.split(':') as [string, string];
    const [port, proto] = rest.split('/');
    return { name: n, port: Number(port), protocol: proto ?? 'TCP' };
  });
  return {
    name,
    namespace,
    generateName: null,
    labels: Object.freeze({ ...d.labels }),
    ips: [d.ip],
    nodeName: 'node1',
    hostNetwork: false,
    containerPorts,
    serviceAccount: d.sa ?? 'default',
  };
}

export function clusterMetadata(
  policyObjects: readonly object[],
  pods = PODS,
  services: readonly ServiceMeta[] = [],
): ClusterMetadata {
  return {
    pods: Object.entries(pods).map(([k, d]) => podMeta(k, d)),
    services,
    nodes: [],
    namespaces: Object.entries(NAMESPACES).map(([name, labels]) => ({
      name,
      labels: Object.freeze({ ...labels }),
    })),
    networkSets: [{ name: 'corp', namespace: null, labels: { net: 'corp' }, nets: ['198.51.100.0/24'] }],
    policyObjects: [...SERVICE_ACCOUNTS, ...policyObjects],
  };
}

const PROTOS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPv6: 58 };

export interface Traces {
  readonly enforced: string[];
  readonly pending: string[];
  readonly all: string[];
  readonly warnings: readonly string[];
}

export class World {
  readonly engine = new PolicyEngine();
  readonly resolver = new EndpointResolver({
    nodeName: 'node1',
    hostEndpoints: false,
    networkSets: true,
    historyMs: 1e9,
  });
  readonly warnings: readonly string[];
  readonly md: ClusterMetadata;

  constructor(policyObjects: readonly object[], pods = PODS, services: readonly ServiceMeta[] = []) {
    const md = clusterMetadata(policyObjects, pods, services);
    this.md = md;
    this.resolver.update(md, 0);
    this.warnings = this.engine.update(md);
  }

  ip(who: string): string {
    return PODS[who]?.ip ?? who;
  }

  /**
   * `from`/`to`: a pod key (ns/name) or an IP. `port`: dest port, or "port/PROTO"; for
   * ICMP "type:code/ICMP" (or ICMPv6) names the connection's first message.
   */
  trace(dir: Direction, from: string, to: string, port: number | string, srcPort = 40000): Traces {
    const [pp, proto] = String(port).split('/') as [string, string | undefined];
    const [p, code] = pp.split(':');
    const icmp = code === undefined ? -1 : (Number(p) << 8) | Number(code);
    const srcIp = this.ip(from);
    const dstIp = this.ip(to);
    const t = this.engine.evaluate(
      dir,
      this.resolver.resolve(srcIp, 0),
      this.resolver.resolve(dstIp, 0),
      srcIp,
      dstIp,
      PROTOS[proto ?? 'TCP'] ?? Number(proto),
      srcPort,
      code === undefined ? Number(p) : 0,
      icmp,
    );
    const strip = (l: readonly string[]): string[] =>
      l.map((s, i) => {
        assert.ok(s.startsWith(`${i}|`), `hit ${JSON.stringify(s)} should have index ${i}`);
        return s.slice(String(i).length + 1);
      });
    return {
      enforced: strip(t.enforced_policies),
      pending: strip(t.pending_policies),
      all: strip(t.all_policies),
      warnings: this.warnings,
    };
  }
}

/** One table row: a policy set, a flow and the expected enforced trace (all three equal without staged policies). */
export interface Case {
  readonly name: string;
  readonly policies: readonly object[];
  readonly dir: Direction;
  readonly from: string;
  readonly to: string;
  readonly port: number | string;
  readonly srcPort?: number;
  readonly enforced: readonly string[];
  readonly pending?: readonly string[];
  readonly all?: readonly string[];
}

export function runCase(c: Case): void {
  const w = new World(c.policies);
  const t = w.trace(c.dir, c.from, c.to, c.port, c.srcPort);
  assert.deepEqual(t.enforced, c.enforced, `${c.name}: enforced`);
  assert.deepEqual(t.pending, c.pending ?? c.enforced, `${c.name}: pending`);
  assert.deepEqual(t.all, c.all ?? c.enforced, `${c.name}: all`);
}

export function profile(ns: string): string {
  return `__PROFILE__|__PROFILE__.kns.${ns}|allow|0`;
}
