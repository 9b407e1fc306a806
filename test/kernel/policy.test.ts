// Policy traces against the real kernel: the test enforces two Kubernetes
// NetworkPolicies (default deny in the nginx namespace; access → nginx:http only) with
// nft rules it generates from them, sends allowed and denied traffic, and checks the
// traces at both reporters, the deny records (end-of-tier trace and drop_reason, at the
// destination whose ingress denies them) and that the verdict cross-check stays at 0;
// then one nft rule that disagrees with the policies is counted as a mismatch. A Calico
// policy of ICMP type/code rules, enforced the same way, checks real pings' traces.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FlowAggregator } from '../../src/aggregate/aggregator.ts';
import type { FlowLogRecord } from '../../src/aggregate/record.ts';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import type { ClusterMetadata, PodMeta } from '../../src/enrich/kube.ts';
import { EndpointResolver } from '../../src/enrich/resolver.ts';
import { Lab, type Pod, run } from '../../src/lab/lab.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { kernelSkipReason } from './helpers.ts';

const skip = kernelSkipReason();

interface Knp {
  metadata: { name: string; namespace: string };
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    policyTypes: string[];
    ingress?: {
      from?: { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: object }[];
      ports?: { port: number | string }[];
    }[];
  };
}

const matches = (sel: { matchLabels?: Record<string, string> } | undefined, labels: Record<string, string>) =>
  Object.entries(sel?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);

/**
 * nft rules enforcing the ingress of these policies (label selectors with matchLabels,
 * peers by podSelector and optional namespaceSelector {}, TCP ports by number or name),
 * written independently of src/policy: accepts for every allowed (source, pod, port),
 * then a drop for every pod some policy selects.
 */
function nftFor(
  table: string,
  policies: Knp[],
  pods: Pod[],
  ports: Record<string, Record<string, number>>,
): string {
  const rules: string[] = ['  ct state established,related accept'];
  const isolated = new Set<Pod>();
  for (const p of policies) {
    for (const target of pods) {
      if (target.namespace !== p.metadata.namespace || !matches(p.spec.podSelector, target.labels ?? {}))
        continue;
      isolated.add(target);
      for (const rule of p.spec.ingress ?? []) {
        const sources = pods.filter((s) =>
          (rule.from ?? [{}]).some(
            (peer) =>
              (peer.namespaceSelector !== undefined || s.namespace === p.metadata.namespace) &&
              matches(peer.podSelector, s.labels ?? {}),
          ),
        );
        for (const port of rule.ports ?? []) {
          const n = typeof port.port === 'number' ? port.port : ports[target.name]?.[port.port];
          if (n === undefined) continue;
          for (const s of sources)
            rules.push(`  ip saddr ${s.ipv4} ip daddr ${target.ipv4} tcp dport ${n} accept`);
        }
      }
    }
  }
  for (const t of isolated) rules.push(`  ip daddr ${t.ipv4} counter drop`);
  return `table inet ${table} {\n chain np {\n  type filter hook forward priority -10; policy accept;\n${rules.join('\n')}\n }\n}\n`;
}

interface IcmpRule {
  action: 'Allow' | 'Deny';
  protocol: 'ICMP';
  icmp: { type: number; code: number };
  source?: { selector: string };
}

/**
 * nft rules enforcing the ingress of a Calico policy made of ICMP rules (`icmp` type and
 * code, an optional `app == '…'` source selector), written independently of src/policy:
 * the rules in order, then the end-of-tier drop for the pods it selects.
 */
function nftForIcmp(table: string, rules: IcmpRule[], targets: Pod[], pods: Pod[]): string {
  const out: string[] = ['  ct state established,related accept'];
  for (const t of targets) {
    for (const r of rules) {
      const app = r.source ? /^app == '([^']+)'$/.exec(r.source.selector)?.[1] : undefined;
      const sources = app === undefined ? [null] : pods.filter((p) => p.labels?.app === app);
      for (const src of sources)
        out.push(
          `  ${src ? `ip saddr ${src.ipv4} ` : ''}ip daddr ${t.ipv4} icmp type ${r.icmp.type} icmp code ${r.icmp.code} ${r.action === 'Allow' ? 'accept' : 'counter drop'}`,
        );
    }
    out.push(`  ip daddr ${t.ipv4} counter drop`);
  }
  return `table inet ${table} {\n chain np {\n  type filter hook forward priority -10; policy accept;\n${out.join('\n')}\n }\n}\n`;
}

describe('policy traces and the verdict cross-check against nft-enforced NetworkPolicies', { skip }, () => {
  let lab: Lab;
  before(() => {
    lab = new Lab();
    lab.enableConntrack();
  });
  after(async () => {
    await lab?.destroy();
  });

  test('allowed and denied traffic: exact traces at both reporters, deny at the destination with drop_reason, no mismatch; then a disagreeing rule is counted', async () => {
    const nginx = lab.addPod({
      namespace: 'web',
      name: `nginx-${lab.prefix}-a`,
      generateName: `nginx-${lab.prefix}-`,
      labels: { app: 'nginx' },
    });
    const access = lab.addPod({
      namespace: 'client',
      name: `access-${lab.prefix}-a`,
      generateName: `access-${lab.prefix}-`,
      labels: { app: 'access' },
    });
    const other = lab.addPod({
      namespace: 'client',
      name: `other-${lab.prefix}-a`,
      generateName: `other-${lab.prefix}-`,
      labels: { app: 'other' },
    });
    const pods = [nginx, access, other];
    const containerPorts: Record<string, Record<string, number>> = { [nginx.name]: { http: 80 } };
    const policies: Knp[] = [
      {
        metadata: { name: 'default-deny', namespace: 'web' },
        spec: { podSelector: {}, policyTypes: ['Ingress'] },
      },
      {
        metadata: { name: 'allow-access', namespace: 'web' },
        spec: {
          podSelector: { matchLabels: { app: 'nginx' } },
          policyTypes: ['Ingress'],
          ingress: [
            {
              from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'access' } } }],
              ports: [{ port: 'http' }],
            },
          ],
        },
      },
    ];
    const md: ClusterMetadata = {
      pods: pods.map(
        (p): PodMeta => ({
          name: p.name,
          namespace: p.namespace,
          generateName: p.generateName ?? null,
          labels: p.labels ?? {},
          ips: [p.ipv4, p.ipv6],
          nodeName: 'node1',
          hostNetwork: false,
          containerPorts: Object.entries(containerPorts[p.name] ?? {}).map(([name, port]) => ({
            name,
            port,
            protocol: 'TCP',
          })),
        }),
      ),
      services: [],
      nodes: [],
      namespaces: [
        { name: 'web', labels: {} },
        { name: 'client', labels: {} },
      ],
      networkSets: [],
      policyObjects: policies.map((p) => ({
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        ...p,
      })),
    };
    const resolver = new EndpointResolver({
      nodeName: 'node1',
      hostEndpoints: false,
      networkSets: false,
      historyMs: 600_000,
    });
    resolver.update(md, Date.now());
    const engine = new PolicyEngine({ nodeName: 'node1' });
    assert.deepEqual(engine.update(md), []);
    const agg = new FlowAggregator({ nodeName: 'node1', resolver, startTimeMs: Date.now(), policy: engine });
    const dp = new FlowDatapath(
      {
        interfaces: pods.map((p) => p.hostIf),
        drainIntervalMs: 200,
        conntrackEvents: true,
        dropTracing: true,
      },
      (u) => agg.observe(u),
      (e) => agg.observeConntrack(e),
    );
    const table = `${lab.prefix}_np`;
    run('nft', ['-f', '-'], nftFor(table, policies, pods, containerPorts));
    const flush = async (): Promise<FlowLogRecord[]> => {
      await dp.sync();
      return agg.flush(Date.now());
    };
    // A TCP connect that the drop rule stops: SYN and its retransmit, then give up.
    const attempt = (from: Pod, to: Pod, port: number) =>
      lab.exec(from, process.execPath, [
        '-e',
        `const s=require('net').connect(${port},'${to.ipv4}');s.on('error',()=>{});setTimeout(()=>{s.destroy();process.exit(0)},1500)`,
      ]);
    const drops = () =>
      Number(
        /counter packets (\d+)/.exec(run('nft', ['list', 'chain', 'inet', table, 'np']))?.[1] ?? Number.NaN,
      );
    try {
      await lab.serve(nginx, 80);
      await lab.serve(nginx, 8080);
      await lab.serve(access, 8080);
      const tcp = (from: Pod, to: Pod, port: number) =>
        lab.traffic(from, [
          'tcp',
          '--host',
          to.ipv4,
          '--port',
          String(port),
          '--conns',
          '2',
          '--send',
          '500',
          '--recv',
          '500',
        ]);
      await tcp(access, nginx, 80);
      await tcp(nginx, access, 8080);
      attempt(other, nginx, 80);
      attempt(access, nginx, 8080);
      const rs = await flush();
      const profile = (ns: string) => [`0|__PROFILE__|__PROFILE__.kns.${ns}|allow|0`];
      const show = (r: FlowLogRecord) => [
        r.action,
        r.reporter,
        r.source_name_aggr,
        r.dest_name_aggr,
        r.dest_port,
        r.num_flows,
        r.policies?.enforced_policies,
        r.drop_reason ?? null,
      ];
      const mine = rs.filter((r) => r.proto === 'tcp').map(show);
      const nameOf = (p: Pod) => `${p.generateName}*`;
      const endOfTier = ['0|default|web/knp.default.default-deny|deny|-1'];
      assert.deepEqual(
        mine.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
        [
          [
            'allow',
            'dst',
            nameOf(access),
            nameOf(nginx),
            80,
            2,
            ['0|default|web/knp.default.allow-access|allow|0'],
            null,
          ],
          ['allow', 'dst', nameOf(nginx), nameOf(access), 8080, 2, profile('client'), null],
          ['allow', 'src', nameOf(access), nameOf(nginx), 80, 2, profile('client'), null],
          ['allow', 'src', nameOf(nginx), nameOf(access), 8080, 2, profile('web'), null],
          ['deny', 'dst', nameOf(access), nameOf(nginx), 8080, 1, endOfTier, 'NETFILTER_DROP'],
          ['deny', 'dst', nameOf(other), nameOf(nginx), 80, 1, endOfTier, 'NETFILTER_DROP'],
        ].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      );
      // The deny records hold exactly the packets the drop rule dropped (SYN + retransmits), as the client sent them.
      const denied = rs.filter((r) => r.action === 'deny');
      assert.equal(
        denied.reduce((s, r) => s + r.packets_in, 0),
        drops(),
      );
      assert.ok(denied.every((r) => r.packets_out === 0 && r.packets_in >= 1));
      const mismatches = () => {
        const s = agg.stats();
        return [
          s.policyMismatchIngressKernelAllowed,
          s.policyMismatchIngressKernelDropped,
          s.policyMismatchEgressKernelAllowed,
          s.policyMismatchEgressKernelDropped,
        ];
      };
      assert.equal(agg.stats().policyDenyAtDestination, 2);
      // A second flush judges the allowed connections too: all agree with the kernel.
      await flush();
      assert.deepEqual(mismatches(), [0, 0, 0, 0]);

      // One rule that disagrees with the policies: access → nginx:80 dropped.
      run('nft', [
        'insert',
        'rule',
        'inet',
        table,
        'np',
        'ip',
        'saddr',
        access.ipv4,
        'ip',
        'daddr',
        nginx.ipv4,
        'tcp',
        'dport',
        '80',
        'counter',
        'drop',
      ]);
      attempt(access, nginx, 80);
      const after = await flush();
      // Only what started in this interval (the earlier denied attempts are still open, so
      // their keys are written again with zero counts).
      const wrong = after.filter((r) => r.action === 'deny' && r.num_flows_started > 0).map(show);
      assert.deepEqual(wrong, [
        ['deny', 'src', nameOf(access), nameOf(nginx), 80, 1, profile('client'), 'NETFILTER_DROP'],
      ]);
      assert.deepEqual(
        mismatches(),
        [0, 0, 0, 1],
        'counted once, at the egress of access (no direction denies it)',
      );
    } finally {
      await dp.stop();
      dp.close();
      run('nft', ['delete', 'table', 'inet', table]);
    }
  });
  test("ICMP type and code: a ping allowed by its echo-request rule, not by a rule for another code; a stranger's ping denied", async () => {
    const target = lab.addPod({
      namespace: 'web',
      name: `pinged-${lab.prefix}-a`,
      generateName: `pinged-${lab.prefix}-`,
      labels: { app: 'pinged' },
    });
    const pinger = lab.addPod({
      namespace: 'client',
      name: `pinger-${lab.prefix}-a`,
      generateName: `pinger-${lab.prefix}-`,
      labels: { app: 'pinger' },
    });
    const stranger = lab.addPod({
      namespace: 'client',
      name: `stranger-${lab.prefix}-a`,
      generateName: `stranger-${lab.prefix}-`,
      labels: { app: 'stranger' },
    });
    const pods = [target, pinger, stranger];
    const rules: IcmpRule[] = [
      // Echo requests with code 1 (ping sends code 0): matches nothing here.
      { action: 'Deny', protocol: 'ICMP', icmp: { type: 8, code: 1 } },
      {
        action: 'Allow',
        protocol: 'ICMP',
        icmp: { type: 8, code: 0 },
        source: { selector: "app == 'pinger'" },
      },
    ];
    const md: ClusterMetadata = {
      pods: pods.map(
        (p): PodMeta => ({
          name: p.name,
          namespace: p.namespace,
          generateName: p.generateName ?? null,
          labels: p.labels ?? {},
          ips: [p.ipv4, p.ipv6],
          nodeName: 'node1',
          hostNetwork: false,
        }),
      ),
      services: [],
      nodes: [],
      namespaces: [
        { name: 'web', labels: {} },
        { name: 'client', labels: {} },
      ],
      networkSets: [],
      policyObjects: [
        {
          apiVersion: 'projectcalico.org/v3',
          kind: 'GlobalNetworkPolicy',
          metadata: { name: 'ping-gate' },
          spec: { selector: "app == 'pinged'", ingress: rules },
        },
      ],
    };
    const resolver = new EndpointResolver({
      nodeName: 'node1',
      hostEndpoints: false,
      networkSets: false,
      historyMs: 600_000,
    });
    resolver.update(md, Date.now());
    const engine = new PolicyEngine({ nodeName: 'node1' });
    assert.deepEqual(engine.update(md), []);
    const agg = new FlowAggregator({ nodeName: 'node1', resolver, startTimeMs: Date.now(), policy: engine });
    const dp = new FlowDatapath(
      {
        interfaces: pods.map((p) => p.hostIf),
        drainIntervalMs: 200,
        conntrackEvents: true,
        dropTracing: true,
      },
      (u) => agg.observe(u),
      (e) => agg.observeConntrack(e),
    );
    const table = `${lab.prefix}_icmp`;
    run('nft', ['-f', '-'], nftForIcmp(table, rules, [target], pods));
    try {
      lab.ping(pinger, target.ipv4, 3);
      // Dropped: ping exits non-zero when nothing answers.
      assert.throws(() => lab.ping(stranger, target.ipv4, 2));
      await dp.sync();
      const rs = agg.flush(Date.now());
      await dp.sync();
      agg.flush(Date.now());
      const nameOf = (p: Pod) => `${p.generateName}*`;
      const mine = rs
        .filter((r) => r.proto === 'icmp')
        .map((r) => [
          r.action,
          r.reporter,
          r.source_name_aggr,
          r.dest_name_aggr,
          r.packets_in,
          r.policies?.enforced_policies,
          r.drop_reason ?? null,
        ])
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
      assert.deepEqual(mine, [
        ['allow', 'dst', nameOf(pinger), nameOf(target), 3, ['0|default|default.ping-gate|allow|1'], null],
        [
          'allow',
          'src',
          nameOf(pinger),
          nameOf(target),
          3,
          ['0|__PROFILE__|__PROFILE__.kns.client|allow|0'],
          null,
        ],
        [
          'deny',
          'dst',
          nameOf(stranger),
          nameOf(target),
          2,
          ['0|default|default.ping-gate|deny|-1'],
          'NETFILTER_DROP',
        ],
      ]);
      const s = agg.stats();
      assert.deepEqual(
        [
          s.policyMismatchIngressKernelAllowed,
          s.policyMismatchIngressKernelDropped,
          s.policyMismatchEgressKernelAllowed,
          s.policyMismatchEgressKernelDropped,
        ],
        [0, 0, 0, 0],
      );
    } finally {
      await dp.stop();
      dp.close();
      run('nft', ['delete', 'table', 'inet', table]);
    }
  });
});
