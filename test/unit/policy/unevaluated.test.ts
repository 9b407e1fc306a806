// Rule fields that were once read as absent (and so over-matched): ICMP type/code
// (icmp, notICMP), HTTP matches (decided on their L3/L4 part, said so), and pre-DNAT /
// untracked / applyOnForward policies (host endpoint policies, in no pod's trace).
// Expectations are hand-computed from Calico's semantics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type Case, PODS, profile, runCase, World } from './world.ts';

const V3 = 'projectcalico.org/v3';
const SECURITY = { apiVersion: V3, kind: 'Tier', metadata: { name: 'security' }, spec: { order: 100 } };
function gnp(name: string, spec: object): object {
  return {
    apiVersion: V3,
    kind: 'GlobalNetworkPolicy',
    metadata: { name },
    spec: { tier: 'security', ...spec },
  };
}
const s = (name: string, action: string, rule: number) => `security|security.${name}|${action}|${rule}`;

const API = 'web/api-1';
const DB = 'web/db-1';
const OTHER = 'client/other-1';
const NGINX = 'web/nginx-1';

// Rules in order; the comments give what each one matches.
const PING = gnp('ping', {
  selector: "app == 'db'",
  ingress: [
    // 0: echo requests (type 8 code 0) from app=other
    { action: 'Deny', protocol: 'ICMP', icmp: { type: 8, code: 0 }, source: { selector: "app == 'other'" } },
    // 1: echo requests, any code
    { action: 'Allow', protocol: 'ICMP', icmp: { type: 8 } },
    // 2: ICMP other than destination unreachable (type 3)
    { action: 'Deny', protocol: 'ICMP', notICMP: { type: 3 } },
    // 3: ICMPv6 echo requests
    { action: 'Allow', protocol: 'ICMPv6', icmp: { type: 128, code: 0 } },
  ],
});
// No protocol: a notICMP rule tests ICMP packets only, never TCP.
const NOT_PING = gnp('not-ping', {
  selector: "app == 'db'",
  ingress: [
    { action: 'Deny', notICMP: { type: 8 } },
    { action: 'Allow', protocol: 'TCP' },
  ],
});

const ICMP_CASES: Case[] = [
  {
    name: 'echo request from app=other: rule 0 (type 8 code 0)',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: OTHER,
    to: DB,
    port: '8:0/ICMP',
    enforced: [s('ping', 'deny', 0)],
  },
  {
    name: 'echo request code 5 from app=other: not rule 0 (code 0), rule 1 (any code)',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: OTHER,
    to: DB,
    port: '8:5/ICMP',
    enforced: [s('ping', 'allow', 1)],
  },
  {
    name: 'echo request from api: rule 1',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '8:0/ICMP',
    enforced: [s('ping', 'allow', 1)],
  },
  {
    name: 'timestamp request (13): not type 8, notICMP type 3 matches: rule 2',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '13:0/ICMP',
    enforced: [s('ping', 'deny', 2)],
  },
  {
    name: 'destination unreachable (3/1): excluded by notICMP, ICMPv6 rule not ICMP: end of tier',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '3:1/ICMP',
    enforced: [s('ping', 'deny', -1)],
  },
  {
    name: 'echo reply seen first is evaluated as the request that opened it (8/0): rule 0 for app=other',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: OTHER,
    to: DB,
    port: '0:0/ICMP',
    enforced: [s('ping', 'deny', 0)],
  },
  {
    name: 'unknown message: no icmp or notICMP rule can match: end of tier',
    policies: [SECURITY, PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '0/ICMP',
    enforced: [s('ping', 'deny', -1)],
  },
  {
    name: 'TCP: notICMP without protocol does not match TCP; rule 1',
    policies: [SECURITY, NOT_PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [s('not-ping', 'allow', 1)],
  },
  {
    name: 'ICMP timestamp: notICMP type 8 matches it: rule 0',
    policies: [SECURITY, NOT_PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '13:0/ICMP',
    enforced: [s('not-ping', 'deny', 0)],
  },
  {
    name: 'ICMP echo request: excluded by notICMP type 8, rule 1 is TCP: end of tier',
    policies: [SECURITY, NOT_PING],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '8:0/ICMP',
    enforced: [s('not-ping', 'deny', -1)],
  },
];

test('ICMP type and code (icmp, notICMP): hand-computed traces', () => {
  for (const c of ICMP_CASES) runCase(c);
});

test('ICMPv6: type 128 matches echo requests only; an echo reply first is the request; neighbour solicitation is not', () => {
  const pods = {
    ...PODS,
    'web/db6-1': { ip: 'fd00::3', labels: { app: 'db' } },
    'web/api6-1': { ip: 'fd00::2', labels: { app: 'api' } },
  };
  const w = new World([SECURITY, PING], pods);
  const at = (port: string) => w.trace('ingress', 'fd00::2', 'fd00::3', port).enforced;
  assert.deepEqual(at('128:0/ICMPv6'), [s('ping', 'allow', 3)]);
  assert.deepEqual(at('129:0/ICMPv6'), [s('ping', 'allow', 3)]);
  assert.deepEqual(at('128:1/ICMPv6'), [s('ping', 'deny', -1)]);
  assert.deepEqual(at('135:0/ICMPv6'), [s('ping', 'deny', -1)]);
});

test('the ICMP message is part of the trace cache key: one engine, same endpoints, two messages, two traces', () => {
  const w = new World([SECURITY, PING]);
  assert.deepEqual(w.trace('ingress', API, DB, '8:0/ICMP').enforced, [s('ping', 'allow', 1)]);
  assert.deepEqual(w.trace('ingress', API, DB, '13:0/ICMP').enforced, [s('ping', 'deny', 2)]);
  assert.deepEqual(w.trace('ingress', API, DB, '8:0/ICMP').enforced, [s('ping', 'allow', 1)]);
  assert.equal(w.engine.stats.cacheHits, 1);
  assert.equal(w.engine.stats.cacheMisses, 2);
});

test('bad ICMP fields are errors naming the field and the value; the policy is left out', () => {
  const bad = (name: string, rule: object) => gnp(name, { selector: 'all()', ingress: [rule] });
  const w = new World([
    SECURITY,
    bad('no-proto', { action: 'Allow', icmp: { type: 8 } }),
    bad('tcp', { action: 'Allow', protocol: 'TCP', icmp: { type: 8 } }),
    bad('code-only', { action: 'Allow', protocol: 'ICMP', icmp: { code: 0 } }),
    bad('type-255', { action: 'Allow', protocol: 'ICMP', icmp: { type: 255 } }),
    bad('code-256', { action: 'Allow', protocol: 'ICMP', notICMP: { type: 3, code: 256 } }),
    bad('not-object', { action: 'Allow', protocol: 'ICMP', icmp: 8 }),
  ]);
  assert.deepEqual(w.warnings, [
    'metadata: GlobalNetworkPolicy no-proto.spec.ingress[0].icmp: needs protocol ICMP or ICMPv6, got undefined; policy skipped',
    'metadata: GlobalNetworkPolicy tcp.spec.ingress[0].icmp: needs protocol ICMP or ICMPv6, got "TCP"; policy skipped',
    'metadata: GlobalNetworkPolicy code-only.spec.ingress[0].icmp.code: ICMP code specified without an ICMP type; policy skipped',
    'metadata: GlobalNetworkPolicy type-255.spec.ingress[0].icmp.type: must be an integer 0-254, got 255; policy skipped',
    'metadata: GlobalNetworkPolicy code-256.spec.ingress[0].notICMP.code: must be an integer 0-255, got 256; policy skipped',
    'metadata: GlobalNetworkPolicy not-object.spec.ingress[0].icmp: must be an object, got 8; policy skipped',
  ]);
  // Every one left out: the profile decides.
  assert.deepEqual(w.trace('ingress', API, DB, '8:0/ICMP').enforced, [profile('web')]);
});

const HTTP_GET = gnp('http-get', {
  selector: "app == 'nginx'",
  ingress: [
    { action: 'Allow', protocol: 'TCP', http: { methods: ['GET'] }, destination: { ports: [80] } },
    { action: 'Allow', protocol: 'TCP', destination: { ports: [9090] } },
  ],
});

test('http: decided on its L3/L4 part, the trace says the HTTP part was not checked, the note is said once per policy', () => {
  const w = new World([SECURITY, HTTP_GET]);
  const note =
    "metadata: GlobalNetworkPolicy http-get.spec.ingress[0].http: HTTP matches are not evaluated (a flow is an L3/L4 connection): the rule is decided on its L3/L4 part, as Calico's kernel dataplane enforces it; requests its application layer would refuse are not in flow records";
  assert.deepEqual(w.warnings, [note]);
  const ev = (port: number) =>
    w.engine.evaluate(
      'ingress',
      w.resolver.resolve(w.ip(API), 0),
      w.resolver.resolve(w.ip(NGINX), 0),
      w.ip(API),
      w.ip(NGINX),
      6,
      40000,
      port,
    );
  const t80 = ev(80);
  assert.deepEqual(t80.enforced_policies, [`0|${s('http-get', 'allow', 0)}`]);
  assert.equal(t80.httpUnchecked, true);
  const t9090 = ev(9090);
  assert.deepEqual(t9090.enforced_policies, [`0|${s('http-get', 'allow', 1)}`]);
  assert.equal(t9090.httpUnchecked, false);
  // Port 81: no rule's L3/L4 part matches.
  assert.deepEqual(ev(81).enforced_policies, [`0|${s('http-get', 'deny', -1)}`]);
  // The same policies again (a label changed elsewhere): nothing new to say.
  const again = w.engine.update({ ...w.md });
  assert.deepEqual(again, []);
});

test('http on a Deny rule or with UDP is an error (Calico: Allow rules, TCP only); the policy is left out', () => {
  const w = new World([
    SECURITY,
    gnp('http-deny', { selector: 'all()', ingress: [{ action: 'Deny', http: { methods: ['GET'] } }] }),
    gnp('http-udp', {
      selector: 'all()',
      ingress: [{ action: 'Allow', protocol: 'UDP', http: { methods: ['GET'] } }],
    }),
  ]);
  assert.deepEqual(w.warnings, [
    'metadata: GlobalNetworkPolicy http-deny.spec.ingress[0].http: only valid for Allow rules, got Deny; policy skipped',
    'metadata: GlobalNetworkPolicy http-udp.spec.ingress[0].http: needs protocol TCP or none, got "UDP"; policy skipped',
  ]);
  assert.deepEqual(w.trace('ingress', API, NGINX, 80).enforced, [profile('web')]);
});

test('preDNAT and doNotTrack policies apply at host endpoints only: in no pod trace, said once each; applyOnForward alone changes nothing for pods', () => {
  const denyAll = { selector: 'all()', applyOnForward: true, ingress: [{ action: 'Deny' }] };
  const w = new World([
    SECURITY,
    gnp('pre-dnat', { ...denyAll, preDNAT: true, order: 1 }),
    gnp('untracked', { ...denyAll, doNotTrack: true, order: 2 }),
    gnp('forward', {
      selector: "app == 'db'",
      applyOnForward: true,
      order: 3,
      ingress: [{ action: 'Allow' }],
    }),
  ]);
  assert.deepEqual(w.warnings, [
    "metadata: GlobalNetworkPolicy pre-dnat: a preDNAT policy applies at host endpoints only: it is in no pod's trace, and host endpoint traffic is not evaluated (its records have empty policies)",
    "metadata: GlobalNetworkPolicy untracked: a doNotTrack policy applies at host endpoints only: it is in no pod's trace, and host endpoint traffic is not evaluated (its records have empty policies)",
    'metadata: GlobalNetworkPolicy forward.spec.applyOnForward: forwarded traffic through host endpoints is not evaluated; for pods the policy is evaluated as usual (applyOnForward does not change it)',
  ]);
  assert.deepEqual(w.trace('ingress', API, DB, 5432).enforced, [s('forward', 'allow', 0)]);
  assert.deepEqual(w.trace('ingress', API, NGINX, 80).enforced, [profile('web')]);
  assert.deepEqual(w.trace('egress', API, NGINX, 80).enforced, [profile('web')]);
});

test('preDNAT with doNotTrack, or on a namespaced policy, is an error naming the field', () => {
  const w = new World([
    SECURITY,
    gnp('both', { selector: 'all()', preDNAT: true, doNotTrack: true, applyOnForward: true }),
    {
      apiVersion: V3,
      kind: 'NetworkPolicy',
      metadata: { name: 'ns-pre', namespace: 'web' },
      spec: { tier: 'security', selector: 'all()', preDNAT: true },
    },
    gnp('not-bool', { selector: 'all()', doNotTrack: 'yes' }),
  ]);
  assert.deepEqual(w.warnings, [
    'metadata: GlobalNetworkPolicy both.spec.preDNAT: preDNAT and doNotTrack cannot both be true; policy skipped',
    'metadata: NetworkPolicy web/ns-pre.spec.preDNAT: only a GlobalNetworkPolicy has one; policy skipped',
    'metadata: GlobalNetworkPolicy not-bool.spec.doNotTrack: must be true or false, got "yes"; policy skipped',
  ]);
});

test('property: icmp {type, code} and notICMP of the same fields split the ICMP messages a rule matches, none over-matched', () => {
  const only = (name: string, rule: object) =>
    gnp(name, { selector: "app == 'db'", ingress: [{ action: 'Allow', protocol: 'ICMP', ...rule }] });
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 254 }),
      fc.option(fc.integer({ min: 0, max: 255 })),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
      (type, code, msgType, msgCode) => {
        const fields = code === null ? { type } : { type, code };
        const w = new World([SECURITY, only('is', { icmp: fields }), only('not', { notICMP: fields })]);
        // Both policies select db in one tier: the first (by name) that allows decides.
        const t = w.trace('ingress', API, DB, `${msgType}:${msgCode}/ICMP`).enforced;
        // The echo reply (0) is evaluated as the request (8/0) that opened the connection.
        const [mt, mc] = msgType === 0 ? [8, 0] : [msgType, msgCode];
        const named = mt === type && (code === null || mc === code);
        assert.deepEqual(t, named ? [s('is', 'allow', 0)] : [s('not', 'allow', 0)]);
      },
    ),
    { numRuns: 300 },
  );
});
