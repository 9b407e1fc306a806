// Properties of the evaluator over random policy sets, and the trace cache.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { NAMESPACES, PODS, World } from './world.ts';

const NS = Object.keys(NAMESPACES);
const APPS = ['nginx', 'api', 'db', 'access', 'other'];
const FLOW_PEERS = [...Object.keys(PODS), '203.0.113.5', '198.51.100.7'];
const PORTS = [80, 8080, 5432, '53/UDP', 9000];

const arbPortK8s = fc.oneof(
  fc.constant({ port: 'http' }),
  fc.constant({ port: 80 }),
  fc.constant({ port: 9000, endPort: 9100 }),
  fc.constant({ port: 53, protocol: 'UDP' }),
  fc.constant({ protocol: 'UDP' }),
);
const arbPeerK8s = fc.oneof(
  fc.constantFrom(...APPS).map((a) => ({ podSelector: { matchLabels: { app: a } } })),
  fc
    .constantFrom(...NS)
    .map((n) => ({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': n } } })),
  fc.constant({ namespaceSelector: {} }),
  fc.constant({ ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.128/25'] } }),
);
const arbEntry = fc.record(
  { from: fc.array(arbPeerK8s, { maxLength: 2 }), ports: fc.array(arbPortK8s, { maxLength: 2 }) },
  { requiredKeys: [] },
);
const arbPodSelector = fc.oneof(
  fc.constant({}),
  fc.constantFrom(...APPS).map((a) => ({ matchLabels: { app: a } })),
);

const arbKnp = (staged: boolean, podSelector: fc.Arbitrary<object>) =>
  fc
    .record({
      ns: fc.constantFrom(...NS),
      ingress: fc.option(fc.array(arbEntry, { maxLength: 2 })),
      sel: podSelector,
    })
    .map(({ ns, ingress, sel }) => (name: string) => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: staged ? 'StagedKubernetesNetworkPolicy' : 'NetworkPolicy',
      metadata: { name, namespace: ns },
      spec: {
        podSelector: sel,
        policyTypes: ['Ingress', 'Egress'],
        ...(ingress === null ? {} : { ingress }),
        egress: ingress ?? [],
      },
    }));

const arbRule = fc.record({
  action: fc.constantFrom('Allow', 'Deny', 'Pass', 'Log'),
  src: fc.option(fc.constantFrom(...APPS).map((a) => `app == '${a}'`)),
  port: fc.option(fc.constantFrom(80, '1000:9000', 'http')),
});
const arbCalico = (selector: fc.Arbitrary<string>) =>
  fc
    .record({
      kind: fc.constantFrom(
        'NetworkPolicy',
        'GlobalNetworkPolicy',
        'StagedNetworkPolicy',
        'StagedGlobalNetworkPolicy',
      ),
      ns: fc.constantFrom(...NS),
      tier: fc.constantFrom('default', 'security', 'platform', 'brand-new'),
      order: fc.option(fc.integer({ min: 0, max: 2000 })),
      selector,
      rules: fc.array(arbRule, { maxLength: 3 }),
    })
    .map((r) => (name: string) => {
      const rules = r.rules.map((x) => ({
        action: x.action,
        ...(x.port === null ? {} : { protocol: 'TCP', destination: { ports: [x.port] } }),
        ...(x.src === null ? {} : { source: { selector: x.src } }),
      }));
      return {
        apiVersion: 'projectcalico.org/v3',
        kind: r.kind,
        metadata: r.kind.includes('Global') ? { name } : { name, namespace: r.ns },
        spec: {
          tier: r.tier,
          ...(r.order === null ? {} : { order: r.order }),
          selector: r.selector,
          types: ['Ingress', 'Egress'],
          ingress: rules,
          egress: rules,
        },
      };
    });

const TIERS = [
  { apiVersion: 'projectcalico.org/v3', kind: 'Tier', metadata: { name: 'security' }, spec: { order: 100 } },
  { apiVersion: 'projectcalico.org/v3', kind: 'Tier', metadata: { name: 'platform' }, spec: { order: 200 } },
  { apiVersion: 'projectcalico.org/v3', kind: 'Tier', metadata: { name: 'brand-new' }, spec: { order: 50 } },
];

const arbSelecting = fc.oneof(
  arbKnp(false, arbPodSelector),
  arbKnp(true, arbPodSelector),
  arbCalico(fc.constantFrom('all()', ...APPS.map((a) => `app == '${a}'`), "has(role) || tier == 'fe'")),
);
// Selects no pod of the fixture: no pod has label `never`.
const arbNothing = fc.oneof(
  arbKnp(false, fc.constant({ matchLabels: { never: 'x' } })),
  arbKnp(true, fc.constant({ matchExpressions: [{ key: 'never', operator: 'Exists' }] })),
  arbCalico(fc.constantFrom('has(never)', "never == 'x' && all()", "app == 'nginx' && app == 'api'")),
);

function allTraces(w: World): string[] {
  const out: string[] = [];
  for (const from of FLOW_PEERS) {
    for (const to of FLOW_PEERS) {
      for (const port of PORTS) {
        for (const dir of ['ingress', 'egress'] as const) {
          const t = w.trace(dir, from, to, port);
          out.push(
            `${dir} ${from}>${to}:${port} ${t.enforced.join(',')} / ${t.pending.join(',')} / ${t.all.join(',')}`,
          );
        }
      }
    }
  }
  return out;
}

test('adding a policy that selects nothing changes no trace', () => {
  fc.assert(
    fc.property(fc.array(arbSelecting, { maxLength: 6 }), arbNothing, (makers, nothing) => {
      const policies = makers.map((m, i) => m(`p${i}`));
      const before = allTraces(new World([...TIERS, ...policies]));
      const after = allTraces(new World([...TIERS, ...policies, nothing('selects-nothing')]));
      assert.deepEqual(after, before);
    }),
    { numRuns: 40 },
  );
});

test('the cache returns the evaluated trace and is emptied when a label or a policy changes', () => {
  const deny = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'deny-nginx', namespace: 'web' },
    spec: { podSelector: { matchLabels: { app: 'nginx' } }, policyTypes: ['Ingress'] },
  };
  const w = new World([deny]);
  const first = w.trace('ingress', 'client/access-1', 'web/nginx-1', 80);
  const again = w.trace('ingress', 'client/access-1', 'web/nginx-1', 80);
  assert.deepEqual(again, first);
  assert.deepEqual(first.enforced, ['default|web/knp.default.deny-nginx|deny|-1']);
  assert.deepEqual(w.engine.stats, { evaluations: 2, cacheHits: 1, cacheMisses: 1, cacheResets: 0 });
  // Another source port, same key (no rule tests source ports): a hit.
  w.trace('ingress', 'client/access-1', 'web/nginx-1', 80, 50000);
  assert.equal(w.engine.stats.cacheHits, 2);

  // The pod's label changes: the policy no longer selects it.
  const relabelled = new World([deny], {
    ...PODS,
    'web/nginx-1': { ...PODS['web/nginx-1']!, labels: { app: 'web' } },
  });
  assert.deepEqual(relabelled.trace('ingress', 'client/access-1', 'web/nginx-1', 80).enforced, [
    '__PROFILE__|__PROFILE__.kns.web|allow|0',
  ]);
  // Same engine, new metadata: the cache is emptied and the new trace computed.
  const md = relabelled.engine.model;
  assert.equal(md.policyCount, 1);
  w.engine.update({
    pods: [],
    services: [],
    nodes: [],
    namespaces: [],
    networkSets: [],
    policyObjects: [],
  });
  assert.equal(w.engine.cachedTraces, 0);
  assert.deepEqual(w.trace('ingress', 'client/access-1', 'web/nginx-1', 80).enforced, [
    '__PROFILE__|__PROFILE__.kns.web|allow|0',
  ]);
});
