// Rules' `services` (Calico's ServiceMatch) against the Service's endpoints from its
// EndpointSlices (through the same slim form the file and API sources make), hand-computed:
// a destination match is an endpoint's address with one of its ports and protocols, or
// the Service's cluster IP and port while it has endpoints; a source match an endpoint's
// address. Before, `services` was read as absent: every one of these Allow rules allowed
// everything.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { convertObject, type ServiceMeta } from '../../../src/enrich/kube.ts';
import { PODS, profile, World } from './world.ts';

const PEERS = [...Object.keys(PODS), '203.0.113.5', '10.96.0.10', '10.96.0.20'];

const V3 = 'projectcalico.org/v3';
const SECURITY = { apiVersion: V3, kind: 'Tier', metadata: { name: 'security' }, spec: { order: 100 } };
const gnp = (name: string, spec: object) => ({
  apiVersion: V3,
  kind: 'GlobalNetworkPolicy',
  metadata: { name },
  spec: { tier: 'security', ...spec },
});
const cnp = (ns: string, name: string, spec: object) => ({
  apiVersion: V3,
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec: { tier: 'security', ...spec },
});
const s = (name: string, action: string, rule: number) => `security|security.${name}|${action}|${rule}`;
const sn = (ns: string, name: string, action: string, rule: number) =>
  `security|${ns}/security.${name}|${action}|${rule}`;

/** An API EndpointSlice, turned into what the policy stage gets. */
function slice(ns: string, svc: string, name: string, addresses: string[][], ports: object[]): object {
  const warnings: string[] = [];
  const m = convertObject(
    'EndpointSlice',
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc }, managedFields: [{}] },
      addressType: 'IPv4',
      endpoints: addresses.map((a) => ({ addresses: a, conditions: { ready: true } })),
      ports,
    },
    'test',
    warnings,
  );
  assert.deepEqual(warnings, []);
  assert.equal(m?.kind, 'Policy');
  return m!.meta;
}

// nginx-1 10.0.1.1, api-1 10.0.1.2, db-1 10.0.1.3 (web); access-1 10.0.2.1 (client).
const SLICES = [
  slice('web', 'nginx', 'nginx-a1', [['10.0.1.1']], [{ name: 'http', port: 80, protocol: 'TCP' }]),
  slice('web', 'dns', 'dns-a1', [['10.0.1.1']], [{ name: 'dns', port: 53, protocol: 'UDP' }]),
  slice('web', 'api', 'api-a1', [['10.0.1.2']], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
];
const SERVICES: ServiceMeta[] = [
  {
    name: 'nginx',
    namespace: 'web',
    clusterIps: ['10.96.0.10'],
    ports: [{ name: 'http', port: 8000, protocol: 'TCP', targetPort: 'http' }],
  },
  {
    name: 'empty',
    namespace: 'web',
    clusterIps: ['10.96.0.20'],
    ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 80 }],
  },
];

const TO_NGINX = cnp('client', 'to-nginx', {
  selector: "app == 'access'",
  types: ['Egress'],
  egress: [
    { action: 'Allow', destination: { services: { name: 'nginx', namespace: 'web' } } },
    { action: 'Allow', protocol: 'UDP', destination: { services: { name: 'dns', namespace: 'web' } } },
    { action: 'Allow', destination: { services: { name: 'empty', namespace: 'web' } } },
  ],
});
const FROM_NGINX = gnp('from-nginx', {
  selector: "app == 'db'",
  ingress: [{ action: 'Allow', source: { services: { name: 'nginx', namespace: 'web' } } }],
});
// A namespaced policy's `services` without a namespace names a Service of its own namespace.
const SAME_NS = cnp('web', 'same-ns', {
  selector: "app == 'api'",
  ingress: [
    { action: 'Allow', protocol: 'TCP', source: { services: { name: 'nginx' }, ports: ['1024:65535'] } },
  ],
});

function world(policies: object[], slices = SLICES): World {
  return new World([SECURITY, ...slices, ...policies], PODS, SERVICES);
}

test('destination services: the endpoints with their own ports and protocols, and the cluster IP and port', () => {
  const w = world([TO_NGINX]);
  const eg = (to: string, port: number | string) => w.trace('egress', 'client/access-1', to, port).enforced;
  const end = [sn('client', 'to-nginx', 'deny', -1)];
  assert.deepEqual(eg('web/nginx-1', 80), [sn('client', 'to-nginx', 'allow', 0)]);
  assert.deepEqual(eg('web/nginx-1', 81), end, 'not an endpoint port');
  assert.deepEqual(eg('web/nginx-1', '80/UDP'), end, 'not its protocol');
  assert.deepEqual(eg('web/nginx-1', '53/UDP'), [sn('client', 'to-nginx', 'allow', 1)]);
  assert.deepEqual(eg('web/api-1', 8080), end, "another Service's endpoint");
  assert.deepEqual(
    eg('10.96.0.10', 8000),
    [sn('client', 'to-nginx', 'allow', 0)],
    'cluster IP, Service port',
  );
  assert.deepEqual(eg('10.96.0.10', 80), end, 'cluster IP, the target port is not a Service port');
  assert.deepEqual(eg('10.96.0.20', 80), end, 'a Service without endpoints matches nothing');
  assert.deepEqual(eg('203.0.113.5', 80), end);
});

test('source services: the endpoints addresses, any port; a namespaced policy defaults to its namespace', () => {
  const w = world([FROM_NGINX, SAME_NS]);
  assert.deepEqual(w.trace('ingress', 'web/nginx-1', 'web/db-1', 5432).enforced, [
    s('from-nginx', 'allow', 0),
  ]);
  assert.deepEqual(w.trace('ingress', 'web/api-1', 'web/db-1', 5432).enforced, [s('from-nginx', 'deny', -1)]);
  assert.deepEqual(w.trace('ingress', 'web/nginx-1', 'web/api-1', 8080).enforced, [
    sn('web', 'same-ns', 'allow', 0),
  ]);
  assert.deepEqual(w.trace('ingress', 'web/nginx-1', 'web/api-1', 8080, 80).enforced, [
    sn('web', 'same-ns', 'deny', -1),
  ]);
  assert.deepEqual(w.trace('ingress', 'client/access-1', 'web/api-1', 8080).enforced, [
    sn('web', 'same-ns', 'deny', -1),
  ]);
});

test('an endpoint added to a Service changes the trace at the next update', () => {
  const w = world([TO_NGINX]);
  assert.deepEqual(w.trace('egress', 'client/access-1', 'web/api-1', 80).enforced, [
    sn('client', 'to-nginx', 'deny', -1),
  ]);
  const grown = [
    ...SLICES,
    slice('web', 'nginx', 'nginx-a2', [['10.0.1.2']], [{ name: 'http', port: 80, protocol: 'TCP' }]),
  ];
  const w2 = world([TO_NGINX], grown);
  assert.deepEqual(w2.trace('egress', 'client/access-1', 'web/api-1', 80).enforced, [
    sn('client', 'to-nginx', 'allow', 0),
  ]);
  // The slim slice keeps only addresses and ports.
  assert.deepEqual(grown.at(-1), {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'nginx-a2', namespace: 'web', labels: { 'kubernetes.io/service-name': 'nginx' } },
    spec: { addresses: ['10.0.1.2'], ports: [{ port: 80, protocol: 'TCP' }] },
  });
});

test('property: an Allow rule naming a Service without endpoints selects nothing: every trace is as without it', () => {
  const none = (rules: object[]) =>
    gnp('only', { selector: 'all()', types: ['Ingress', 'Egress'], ingress: rules, egress: rules });
  const withEmpty = world([
    gnp('only', {
      selector: 'all()',
      types: ['Ingress', 'Egress'],
      ingress: [{ action: 'Allow', source: { services: { name: 'empty', namespace: 'web' } } }],
      egress: [{ action: 'Allow', destination: { services: { name: 'empty', namespace: 'web' } } }],
    }),
  ]);
  const without = world([none([])]);
  let n = 0;
  for (const from of PEERS)
    for (const to of PEERS)
      for (const port of [80, 8000, '53/UDP'])
        for (const dir of ['ingress', 'egress'] as const) {
          assert.deepEqual(withEmpty.trace(dir, from, to, port), without.trace(dir, from, to, port));
          n++;
        }
  assert.equal(n, 12 * 12 * 3 * 2);
});

test('bad services matches are errors naming the field; the policy is left out', () => {
  const eg = (name: string, destination: object) =>
    gnp(name, { selector: 'all()', egress: [{ action: 'Allow', destination }] });
  const w = world([
    eg('no-ns', { services: { name: 'nginx' } }),
    eg('no-name', { services: { namespace: 'web' } }),
    eg('with-sel', { services: { name: 'nginx', namespace: 'web' }, selector: 'all()' }),
    eg('with-nets', { services: { name: 'nginx', namespace: 'web' }, nets: ['10.0.0.0/8'] }),
    {
      ...eg('with-ports', { services: { name: 'nginx', namespace: 'web' }, ports: [80] }),
      spec: {
        tier: 'security',
        selector: 'all()',
        egress: [
          {
            action: 'Allow',
            protocol: 'TCP',
            destination: { services: { name: 'nginx', namespace: 'web' }, ports: [80] },
          },
        ],
      },
    },
    gnp('src-in-egress', {
      selector: 'all()',
      egress: [{ action: 'Allow', source: { services: { name: 'nginx', namespace: 'web' } } }],
    }),
    gnp('dst-in-ingress', {
      selector: 'all()',
      ingress: [{ action: 'Allow', destination: { services: { name: 'nginx', namespace: 'web' } } }],
    }),
  ]);
  const d = 'spec.egress[0].destination.services';
  assert.deepEqual(w.warnings, [
    `metadata: GlobalNetworkPolicy no-ns.${d}.namespace: a GlobalNetworkPolicy must specify a namespace; policy skipped`,
    `metadata: GlobalNetworkPolicy no-name.${d}.name: must specify a service name, got undefined; policy skipped`,
    `metadata: GlobalNetworkPolicy with-sel.${d}: cannot specify Selector/NotSelector and Services on the same rule; policy skipped`,
    `metadata: GlobalNetworkPolicy with-nets.${d}: cannot specify Nets/NotNets and Services on the same rule; policy skipped`,
    "metadata: GlobalNetworkPolicy with-ports.spec.egress[0].destination.ports: cannot specify ports with a service (its endpoints' ports are used); policy skipped",
    "metadata: GlobalNetworkPolicy src-in-egress.spec.egress[0].source.services: not allowed in an egress rule's source; policy skipped",
    "metadata: GlobalNetworkPolicy dst-in-ingress.spec.ingress[0].destination.services: not allowed in an ingress rule's destination; policy skipped",
  ]);
  assert.deepEqual(w.trace('egress', 'client/access-1', 'web/nginx-1', 80).enforced, [profile('client')]);
});
