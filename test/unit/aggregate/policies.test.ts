// Policy traces in records: the trace is part of the record key, evaluated for the
// direction the reporter enforces, drops between two pods of this node go to the denying
// direction, and the verdict cross-check counts disagreements once per connection.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import type { FlowLogRecord } from '../../../src/aggregate/record.ts';
import { TcpFlag } from '../../../src/datapath/types.ts';
import type { ClusterMetadata } from '../../../src/enrich/kube.ts';
import { PolicyEngine } from '../../../src/policy/engine.ts';
import { AT_DST, AT_SRC, F1, F2, metadata, pod, resolverWith, T0, upd } from './helpers.ts';

const NGINX = '10.0.1.1';
const ACCESS = '10.0.2.1';
const OTHER = '10.0.2.2';
const knp = (name: string, spec: object) => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: 'web' },
  spec,
});
const DENY = knp('default-deny', { podSelector: {}, policyTypes: ['Ingress'] });
const ALLOW = knp('allow-access', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [
    {
      from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'access' } } }],
      ports: [{ port: 'http' }],
    },
  ],
});

function cluster(policyObjects: object[]): ClusterMetadata {
  return metadata({
    pods: [
      {
        ...pod('web', 'nginx-1', NGINX, 'nginx-', { app: 'nginx' }),
        containerPorts: [{ name: 'http', port: 80, protocol: 'TCP' }],
      },
      pod('client', 'access-1', ACCESS, 'access-', { app: 'access' }),
      pod('client', 'other-1', OTHER, 'other-', { app: 'other' }),
    ],
    namespaces: [
      { name: 'web', labels: {} },
      { name: 'client', labels: {} },
    ],
    policyObjects,
  });
}

function setup(
  policyObjects: object[] = [DENY, ALLOW],
  extra: Partial<ConstructorParameters<typeof FlowAggregator>[0]> = {},
) {
  const md = cluster(policyObjects);
  const resolver = resolverWith(md);
  const engine = new PolicyEngine({ nodeName: 'node1' });
  engine.update(md);
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver,
    startTimeMs: T0,
    kindForAllowed: 2,
    kindForDenied: 1,
    policy: engine,
    ...extra,
  });
  return { agg, engine, resolver };
}

const enforced = (r: FlowLogRecord) => r.policies?.enforced_policies;
const ALLOWED = ['0|default|web/knp.default.allow-access|allow|0'];
const DENIED = ['0|default|web/knp.default.default-deny|deny|-1'];
const PROFILE_CLIENT = ['0|__PROFILE__|__PROFILE__.kns.client|allow|0'];
const FIN = TcpFlag.FIN | TcpFlag.ACK;

test('the trace is part of the record key: two clients of nginx at kind 2 are two records, each with its trace', () => {
  const { agg } = setup();
  // At nginx's veth (reporter dst): the ingress of nginx.
  agg.observe(
    upd({ srcIp: ACCESS, dstIp: NGINX, interfaceName: 'cali1', origPackets: 2, origBytes: 120, ...AT_DST }),
  );
  agg.observe(
    upd({
      srcIp: OTHER,
      dstIp: NGINX,
      srcPort: 40001,
      interfaceName: 'cali1',
      origPackets: 3,
      origBytes: 180,
      ...AT_DST,
    }),
  );
  // At access's veth (reporter src): the egress of access, no policy selects it.
  agg.observe(
    upd({ srcIp: ACCESS, dstIp: NGINX, interfaceName: 'cali2', origPackets: 2, origBytes: 120, ...AT_SRC }),
  );
  const rs = agg.flush(F1);
  const byReporter = (rep: string) => rs.filter((r) => r.reporter === rep);
  assert.equal(rs.length, 3);
  const dst = byReporter('dst').sort((a, b) => a.packets_in - b.packets_in);
  assert.deepEqual(
    dst.map((r) => [r.source_name_aggr, r.packets_in, enforced(r)]),
    [
      ['access-*', 2, ALLOWED],
      ['other-*', 3, DENIED],
    ],
  );
  assert.deepEqual(byReporter('src').map(enforced), [PROFILE_CLIENT]);
  assert.deepEqual(dst[0]!.policies, {
    all_policies: ALLOWED,
    enforced_policies: ALLOWED,
    pending_policies: ALLOWED,
  });
  assert.equal(agg.stats().policyEvaluations, 3);
});

test('FlowLogsFileIncludePolicies off: policies null and nothing evaluated', () => {
  const { agg } = setup(undefined, { includePolicies: false });
  agg.observe(upd({ srcIp: ACCESS, dstIp: NGINX, origPackets: 1, origBytes: 60, ...AT_DST }));
  const [r] = agg.flush(F1);
  assert.equal(r!.policies, null);
  assert.equal(agg.stats().policyEvaluations, 0);
});

test('a drop between two pods here goes to the direction that denies it: the destination ingress, with its trace and drop_reason', () => {
  const { agg } = setup();
  // Seen on other's veth only (the kernel dropped it before nginx's veth).
  agg.observe(
    upd({
      srcIp: OTHER,
      dstIp: NGINX,
      interfaceName: 'cali3',
      origPackets: 2,
      origBytes: 120,
      dropReason: 12,
      dropReasonName: 'NETFILTER_DROP',
      ...AT_SRC,
    }),
  );
  const rs = agg.flush(F1);
  assert.equal(rs.length, 1);
  const r = rs[0]!;
  assert.deepEqual(
    [
      r.action,
      r.reporter,
      r.drop_reason,
      r.source_ip,
      r.dest_ip,
      r.dest_port,
      r.packets_in,
      r.bytes_in,
      r.packets_out,
    ],
    ['deny', 'dst', 'NETFILTER_DROP', OTHER, NGINX, 80, 2, 120, 0],
  );
  assert.deepEqual(r.policies, { all_policies: DENIED, enforced_policies: DENIED, pending_policies: DENIED });
  const s = agg.stats();
  assert.equal(s.policyDenyAtDestination, 1);
  assert.deepEqual(
    [
      s.policyMismatchIngressKernelDropped,
      s.policyMismatchEgressKernelDropped,
      s.policyMismatchIngressKernelAllowed,
      s.policyMismatchEgressKernelAllowed,
    ],
    [0, 0, 0, 0],
  );
});

test('verdict cross-check: a drop the policies allow, and a delivered connection they deny, each counted once by direction', () => {
  const { agg } = setup();
  // The kernel drops access → nginx:80, which both directions' policies allow: stays at the
  // source with its (allowing) trace and the drop reason, and is a mismatch.
  const drop = {
    srcIp: ACCESS,
    dstIp: NGINX,
    interfaceName: 'cali2',
    origPackets: 1,
    origBytes: 60,
    dropReason: 12,
    dropReasonName: 'NETFILTER_DROP',
    ...AT_SRC,
  } as const;
  agg.observe(upd(drop));
  // The kernel delivers other → nginx:80, which nginx's ingress policies deny.
  const open = {
    srcIp: OTHER,
    dstIp: NGINX,
    srcPort: 40001,
    interfaceName: 'cali1',
    origPackets: 3,
    origBytes: 180,
    ...AT_DST,
  } as const;
  agg.observe(upd(open));
  let rs = agg.flush(F1);
  const deny = rs.find((r) => r.action === 'deny')!;
  assert.deepEqual(
    [deny.reporter, deny.drop_reason, enforced(deny)],
    ['src', 'NETFILTER_DROP', PROFILE_CLIENT],
  );
  let s = agg.stats();
  assert.equal(s.policyMismatchEgressKernelDropped, 1);
  assert.equal(
    s.policyMismatchIngressKernelAllowed,
    0,
    'an allowed connection is judged at its second flush or at its end',
  );
  // More of both in the next interval, and the delivered one completes.
  agg.observe(upd({ ...drop, lastSeenMs: T0 + 301_000 }));
  agg.observe(
    upd({
      ...open,
      origPackets: 1,
      replyPackets: 1,
      origTcpFlags: FIN,
      replyTcpFlags: FIN,
      lastSeenMs: T0 + 301_000,
    }),
  );
  rs = agg.flush(F2);
  const allow = rs.find((r) => r.action === 'allow')!;
  assert.deepEqual([allow.reporter, enforced(allow), allow.num_flows_completed], ['dst', DENIED, 1]);
  s = agg.stats();
  assert.deepEqual(
    [
      s.policyMismatchEgressKernelDropped,
      s.policyMismatchIngressKernelAllowed,
      s.policyMismatchIngressKernelDropped,
      s.policyMismatchEgressKernelAllowed,
    ],
    [1, 1, 0, 0],
    'once per connection',
  );
});

test('a policy change re-evaluates carried-over connections at the next flush', () => {
  const { agg, engine, resolver } = setup([ALLOW]);
  const u = {
    srcIp: OTHER,
    dstIp: NGINX,
    interfaceName: 'cali1',
    origPackets: 1,
    origBytes: 60,
    ...AT_DST,
  } as const;
  agg.observe(upd(u));
  assert.deepEqual(agg.flush(F1).map(enforced), [['0|default|web/knp.default.allow-access|deny|-1']]);
  const md = cluster([]);
  resolver.update(md, F1);
  engine.update(md);
  agg.observe(upd({ ...u, lastSeenMs: T0 + 301_000 }));
  assert.deepEqual(agg.flush(F2).map(enforced), [['0|__PROFILE__|__PROFILE__.kns.web|allow|0']]);
});

test('without a policy stage, records carry empty policy lists', () => {
  const md = cluster([DENY]);
  const agg = new FlowAggregator({ nodeName: 'node1', resolver: resolverWith(md), startTimeMs: T0 });
  agg.observe(upd({ srcIp: OTHER, dstIp: NGINX, origPackets: 1, origBytes: 60, ...AT_DST }));
  assert.deepEqual(agg.flush(F1)[0]!.policies, {
    all_policies: [],
    enforced_policies: [],
    pending_policies: [],
  });
});

test('ICMP connections are evaluated on their first message: an echo request and a timestamp request get their own traces', () => {
  const ping = {
    apiVersion: 'projectcalico.org/v3',
    kind: 'GlobalNetworkPolicy',
    metadata: { name: 'ping-only' },
    spec: {
      selector: "app == 'nginx'",
      ingress: [
        { action: 'Allow', protocol: 'ICMP', icmp: { type: 8, code: 0 } },
        { action: 'Allow', protocol: 'TCP', http: { methods: ['GET'] }, destination: { ports: [80] } },
      ],
    },
  };
  const { agg } = setup([ping]);
  const icmp = (srcIp: string, icmpType: number, icmpId: number) =>
    upd({
      srcIp,
      dstIp: NGINX,
      proto: 1,
      srcPort: 0,
      dstPort: 0,
      icmpType,
      icmpId,
      key: `cali1|1|${srcIp}|${icmpType}|${icmpId}`,
      origPackets: 1,
      origBytes: 84,
      ...AT_DST,
    });
  agg.observe(icmp(ACCESS, 8, 7));
  agg.observe(icmp(OTHER, 13, 9));
  agg.observe(upd({ srcIp: OTHER, dstIp: NGINX, origPackets: 1, origBytes: 60, ...AT_DST }));
  const rs = agg.flush(F1);
  assert.deepEqual(rs.map((r) => [r.proto, r.source_name_aggr, enforced(r)]).sort(), [
    ['icmp', 'access-*', ['0|default|default.ping-only|allow|0']],
    ['icmp', 'other-*', ['0|default|default.ping-only|deny|-1']],
    ['tcp', 'other-*', ['0|default|default.ping-only|allow|1']],
  ]);
  // The TCP connection was allowed by the rule with an HTTP match: counted as unchecked at L7.
  assert.equal(agg.stats().policyHttpUnchecked, 1);
  assert.equal(agg.stats().policyHostEndpointUnevaluated, 0);
});

test('a connection whose enforcing end is a host endpoint: empty policy lists, counted as not evaluated', () => {
  const md = cluster([DENY, ALLOW]);
  const engine = new PolicyEngine({ nodeName: 'node1' });
  engine.update(md);
  const agg = new FlowAggregator({
    nodeName: 'node1',
    resolver: resolverWith(md, ['192.168.1.10']),
    startTimeMs: T0,
    policy: engine,
    hostEndpoints: true,
  });
  // The node's own connection to nginx, seen on its host interface: reporter src, a hep.
  agg.observe(
    upd({
      srcIp: '192.168.1.10',
      dstIp: NGINX,
      interfaceName: 'eth0',
      origPackets: 1,
      origBytes: 60,
      ...AT_DST,
    }),
  );
  const rs = agg.flush(F1);
  assert.deepEqual(
    rs.map((r) => [r.source_type, r.reporter, r.policies]),
    [['hep', 'src', { all_policies: [], enforced_policies: [], pending_policies: [] }]],
  );
  assert.equal(agg.stats().policyHostEndpointUnevaluated, 1);
});
