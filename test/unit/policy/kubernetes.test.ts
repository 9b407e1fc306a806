// Kubernetes NetworkPolicy traces against hand-computed expectations (rule indexes as
// Calico expands KNP rules: per entry, protocols sorted SCTP < TCP < UDP, then peers).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Case, profile, runCase, World } from './world.ts';

function knp(ns: string, name: string, spec: object): object {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: ns },
    spec,
  };
}

const DENY_ALL_WEB = knp('web', 'default-deny', { podSelector: {}, policyTypes: ['Ingress'] });
const ALLOW_ACCESS = knp('web', 'allow-access', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [
    {
      from: [
        {
          namespaceSelector: { matchLabels: { team: 'client' } },
          podSelector: { matchLabels: { app: 'access' } },
        },
      ],
      ports: [{ port: 'http' }],
    },
  ],
});
const NAMED_HTTP = knp('web', 'named-http', { podSelector: {}, ingress: [{ ports: [{ port: 'http' }] }] });
const RANGE = knp('web', 'range', { podSelector: {}, ingress: [{ ports: [{ port: 9000, endPort: 9100 }] }] });
const UDP_DNS = knp('web', 'dns', { podSelector: {}, ingress: [{ ports: [{ port: 53, protocol: 'UDP' }] }] });
const SCTP = knp('web', 'sctp', {
  podSelector: { matchLabels: { app: 'db' } },
  ingress: [{ ports: [{ port: 7777, protocol: 'SCTP' }] }],
});
const IPBLOCK = knp('web', 'ext', {
  podSelector: {},
  ingress: [{ from: [{ ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.128/25'] } }] }],
});
const IPBLOCK_PODS = knp('web', 'client-net', {
  podSelector: {},
  ingress: [{ from: [{ ipBlock: { cidr: '10.0.2.0/24' } }] }],
});
const EMPTY_INGRESS = knp('web', 'empty', { podSelector: {}, policyTypes: ['Ingress'], ingress: [] });
const ALLOW_ALL = knp('web', 'allow-all', { podSelector: {}, ingress: [{}] });
const EMPTY_FROM = knp('web', 'empty-from', { podSelector: {}, ingress: [{ from: [] }] });
const EMPTY_PORTS = knp('web', 'empty-ports', {
  podSelector: {},
  ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [] }],
});
const SAME_NS = knp('web', 'same-ns', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] });
const ANY_NS = knp('web', 'any-ns', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] });
const PROD_NS = knp('web', 'prod', {
  podSelector: {},
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }] }],
});
const BY_NAME_NS = knp('web', 'by-name', {
  podSelector: {},
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'dev' } } }] }],
});
const EXPR_IN = knp('web', 'in', {
  podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['nginx', 'api'] }] },
  policyTypes: ['Ingress'],
});
const EXPR_NOTIN = knp('dev', 'notin', {
  podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['access'] }] },
  policyTypes: ['Ingress'],
});
const EXPR_EXISTS = knp('web', 'exists', {
  podSelector: { matchExpressions: [{ key: 'role', operator: 'Exists' }] },
  policyTypes: ['Ingress'],
});
const EXPR_DNE = knp('web', 'dne', {
  podSelector: { matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] },
  policyTypes: ['Ingress'],
});
const TWO_RULES = knp('web', 'two-rules', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [
    {
      from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'access' } } }],
      ports: [{ port: 80 }],
    },
    { from: [{ ipBlock: { cidr: '203.0.113.0/24' } }] },
  ],
});
const TWO_PEERS = knp('web', 'two-peers', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [
    { from: [{ podSelector: { matchLabels: { app: 'api' } } }, { ipBlock: { cidr: '203.0.113.0/24' } }] },
  ],
});
// Rules: TCP×api = 0, TCP×db = 1, UDP×api = 2, UDP×db = 3.
const PROTO_EXPAND = knp('web', 'expand', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [
    {
      from: [
        { podSelector: { matchLabels: { app: 'api' } } },
        { podSelector: { matchLabels: { app: 'db' } } },
      ],
      ports: [
        { port: 53, protocol: 'UDP' },
        { port: 80, protocol: 'TCP' },
      ],
    },
  ],
});
// SCTP sorts before TCP: SCTP rule 0, TCP rule 1.
const SCTP_FIRST = knp('web', 'sctp-first', {
  podSelector: { matchLabels: { app: 'db' } },
  ingress: [{ ports: [{ port: 5432 }, { port: 7777, protocol: 'SCTP' }] }],
});
const ALL_UDP = knp('web', 'all-udp', { podSelector: {}, ingress: [{ ports: [{ protocol: 'UDP' }] }] });
const ALLOW_A = knp('web', 'allow-a', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'access' } } }] }],
});
const ALLOW_B = knp('web', 'allow-b', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'other' } } }] }],
});
const EGRESS_DB = knp('web', 'api-egress', {
  podSelector: { matchLabels: { app: 'api' } },
  policyTypes: ['Egress'],
  egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }], ports: [{ port: 5432 }] }],
});
const IMPLIED_EGRESS = knp('web', 'implied', {
  podSelector: { matchLabels: { app: 'api' } },
  egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }] }],
});
const EMPTY_EGRESS = knp('web', 'empty-egress', { podSelector: { matchLabels: { app: 'api' } }, egress: [] });
const EGRESS_INTERNET = knp('web', 'internet', {
  podSelector: { matchLabels: { app: 'api' } },
  policyTypes: ['Egress'],
  egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }] }],
});
const EGRESS_NAMED = knp('web', 'egress-named', {
  podSelector: { matchLabels: { app: 'api' } },
  policyTypes: ['Egress'],
  egress: [{ ports: [{ port: 'http' }] }],
});
const V6_BLOCK = knp('web', 'v6', {
  podSelector: {},
  ingress: [{ from: [{ ipBlock: { cidr: '2001:db8::/32' } }] }],
});
const DEMO_ALLOW = knp('policy-demo', 'allow-access', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [{ from: [{ podSelector: { matchLabels: { app: 'access' } } }], ports: [{ port: 'http' }] }],
});

const NGINX = 'web/nginx-1';
const ACCESS = 'client/access-1';
const OTHER = 'client/other-1';
const API = 'web/api-1';
const DB = 'web/db-1';
const EXT = '203.0.113.5';
const kd = (name: string, action: string, rule: number, ns = 'web') =>
  `default|${ns}/knp.default.${name}|${action}|${rule}`;

const CASES: Case[] = [
  {
    name: 'no policy: ingress profile',
    policies: [],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'no policy: egress profile',
    policies: [],
    dir: 'egress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [profile('client')],
  },
  {
    name: 'no policy: from the internet',
    policies: [],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'default deny: ingress end-of-tier',
    policies: [DENY_ALL_WEB],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('default-deny', 'deny', -1)],
  },
  {
    name: 'default deny: every pod of the ns',
    policies: [DENY_ALL_WEB],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 5432,
    enforced: [kd('default-deny', 'deny', -1)],
  },
  {
    name: 'default deny ingress only: egress profile',
    policies: [DENY_ALL_WEB],
    dir: 'egress',
    from: NGINX,
    to: EXT,
    port: 443,
    enforced: [profile('web')],
  },
  {
    name: 'default deny: other namespace untouched',
    policies: [DENY_ALL_WEB],
    dir: 'ingress',
    from: NGINX,
    to: OTHER,
    port: 80,
    enforced: [profile('client')],
  },
  {
    name: 'ns+pod selector, named port: allowed',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-access', 'allow', 0)],
  },
  {
    name: 'named port: other port denied',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 8080,
    enforced: [kd('allow-access', 'deny', -1)],
  },
  {
    name: 'ns+pod selector: wrong pod',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: OTHER,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-access', 'deny', -1)],
  },
  {
    name: 'ns+pod selector: right pod, wrong ns',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: 'dev/access-1',
    to: NGINX,
    port: 80,
    enforced: [kd('allow-access', 'deny', -1)],
  },
  {
    name: 'not selected pod: profile',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 8080,
    enforced: [profile('web')],
  },
  {
    name: 'named port: protocol must match',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: '80/UDP',
    enforced: [kd('allow-access', 'deny', -1)],
  },
  {
    name: 'named port: from the internet',
    policies: [ALLOW_ACCESS],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-access', 'deny', -1)],
  },
  {
    name: 'named port resolves per pod (api http=8080)',
    policies: [NAMED_HTTP],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 8080,
    enforced: [kd('named-http', 'allow', 0)],
  },
  {
    name: 'named port resolves per pod (nginx 8080 is not http)',
    policies: [NAMED_HTTP],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 8080,
    enforced: [kd('named-http', 'deny', -1)],
  },
  {
    name: 'named port absent on pod',
    policies: [NAMED_HTTP],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 80,
    enforced: [kd('named-http', 'deny', -1)],
  },
  {
    name: 'endPort: low end',
    policies: [RANGE],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 9000,
    enforced: [kd('range', 'allow', 0)],
  },
  {
    name: 'endPort: high end',
    policies: [RANGE],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 9100,
    enforced: [kd('range', 'allow', 0)],
  },
  {
    name: 'endPort: above',
    policies: [RANGE],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 9101,
    enforced: [kd('range', 'deny', -1)],
  },
  {
    name: 'endPort: below',
    policies: [RANGE],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 8999,
    enforced: [kd('range', 'deny', -1)],
  },
  {
    name: 'UDP port: udp allowed',
    policies: [UDP_DNS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: '53/UDP',
    enforced: [kd('dns', 'allow', 0)],
  },
  {
    name: 'UDP port: tcp denied',
    policies: [UDP_DNS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 53,
    enforced: [kd('dns', 'deny', -1)],
  },
  {
    name: 'SCTP port: sctp allowed',
    policies: [SCTP],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '7777/SCTP',
    enforced: [kd('sctp', 'allow', 0)],
  },
  {
    name: 'SCTP port: tcp denied',
    policies: [SCTP],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 7777,
    enforced: [kd('sctp', 'deny', -1)],
  },
  {
    name: 'ipBlock: inside cidr',
    policies: [IPBLOCK],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [kd('ext', 'allow', 0)],
  },
  {
    name: 'ipBlock: in except',
    policies: [IPBLOCK],
    dir: 'ingress',
    from: '203.0.113.200',
    to: NGINX,
    port: 80,
    enforced: [kd('ext', 'deny', -1)],
  },
  {
    name: 'ipBlock: except edge .128',
    policies: [IPBLOCK],
    dir: 'ingress',
    from: '203.0.113.128',
    to: NGINX,
    port: 80,
    enforced: [kd('ext', 'deny', -1)],
  },
  {
    name: 'ipBlock: just below except .127',
    policies: [IPBLOCK],
    dir: 'ingress',
    from: '203.0.113.127',
    to: NGINX,
    port: 80,
    enforced: [kd('ext', 'allow', 0)],
  },
  {
    name: 'ipBlock: outside',
    policies: [IPBLOCK],
    dir: 'ingress',
    from: '198.51.100.1',
    to: NGINX,
    port: 80,
    enforced: [kd('ext', 'deny', -1)],
  },
  {
    name: 'ipBlock: pods by IP',
    policies: [IPBLOCK_PODS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('client-net', 'allow', 0)],
  },
  {
    name: 'ipBlock: pod outside',
    policies: [IPBLOCK_PODS],
    dir: 'ingress',
    from: 'dev/tool-1',
    to: NGINX,
    port: 80,
    enforced: [kd('client-net', 'deny', -1)],
  },
  {
    name: 'ingress: [] denies all',
    policies: [EMPTY_INGRESS],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [kd('empty', 'deny', -1)],
  },
  {
    name: 'ingress: [{}] allows all pods',
    policies: [ALLOW_ALL],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 1234,
    enforced: [kd('allow-all', 'allow', 0)],
  },
  {
    name: 'ingress: [{}] allows the internet',
    policies: [ALLOW_ALL],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: '5000/UDP',
    enforced: [kd('allow-all', 'allow', 0)],
  },
  {
    name: 'from: [] means any peer',
    policies: [EMPTY_FROM],
    dir: 'ingress',
    from: EXT,
    to: DB,
    port: 5432,
    enforced: [kd('empty-from', 'allow', 0)],
  },
  {
    name: 'ports: [] means any port',
    policies: [EMPTY_PORTS],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: '4444/UDP',
    enforced: [kd('empty-ports', 'allow', 0)],
  },
  {
    name: 'ports: [] peer still applies',
    policies: [EMPTY_PORTS],
    dir: 'ingress',
    from: DB,
    to: NGINX,
    port: 80,
    enforced: [kd('empty-ports', 'deny', -1)],
  },
  {
    name: 'peer podSelector {}: same namespace',
    policies: [SAME_NS],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [kd('same-ns', 'allow', 0)],
  },
  {
    name: 'peer podSelector {}: other namespace denied',
    policies: [SAME_NS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('same-ns', 'deny', -1)],
  },
  {
    name: 'peer podSelector {}: not an IP',
    policies: [SAME_NS],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [kd('same-ns', 'deny', -1)],
  },
  {
    name: 'peer namespaceSelector {}: any ns',
    policies: [ANY_NS],
    dir: 'ingress',
    from: 'dev/tool-1',
    to: NGINX,
    port: 80,
    enforced: [kd('any-ns', 'allow', 0)],
  },
  {
    name: 'peer namespaceSelector {}: not the internet',
    policies: [ANY_NS],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [kd('any-ns', 'deny', -1)],
  },
  {
    name: 'namespaceSelector labels: prod',
    policies: [PROD_NS],
    dir: 'ingress',
    from: OTHER,
    to: NGINX,
    port: 80,
    enforced: [kd('prod', 'allow', 0)],
  },
  {
    name: 'namespaceSelector labels: dev denied',
    policies: [PROD_NS],
    dir: 'ingress',
    from: 'dev/access-1',
    to: NGINX,
    port: 80,
    enforced: [kd('prod', 'deny', -1)],
  },
  {
    name: 'namespaceSelector by metadata.name',
    policies: [BY_NAME_NS],
    dir: 'ingress',
    from: 'dev/tool-1',
    to: NGINX,
    port: 80,
    enforced: [kd('by-name', 'allow', 0)],
  },
  {
    name: 'namespaceSelector by metadata.name: other',
    policies: [BY_NAME_NS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('by-name', 'deny', -1)],
  },
  {
    name: 'matchExpressions In: selected',
    policies: [EXPR_IN],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 8080,
    enforced: [kd('in', 'deny', -1)],
  },
  {
    name: 'matchExpressions In: not selected',
    policies: [EXPR_IN],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 5432,
    enforced: [profile('web')],
  },
  {
    name: 'matchExpressions NotIn: absent key selected',
    policies: [EXPR_NOTIN],
    dir: 'ingress',
    from: ACCESS,
    to: 'dev/tool-1',
    port: 80,
    enforced: [kd('notin', 'deny', -1, 'dev')],
  },
  {
    name: 'matchExpressions NotIn: excluded',
    policies: [EXPR_NOTIN],
    dir: 'ingress',
    from: ACCESS,
    to: 'dev/access-1',
    port: 80,
    enforced: [profile('dev')],
  },
  {
    name: 'matchExpressions Exists',
    policies: [EXPR_EXISTS],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [kd('exists', 'deny', -1)],
  },
  {
    name: 'matchExpressions Exists: absent',
    policies: [EXPR_EXISTS],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'matchExpressions DoesNotExist',
    policies: [EXPR_DNE],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [kd('dne', 'deny', -1)],
  },
  {
    name: 'matchExpressions DoesNotExist: present',
    policies: [EXPR_DNE],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [profile('web')],
  },
  {
    name: 'second entry is rule 1',
    policies: [TWO_RULES],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 443,
    enforced: [kd('two-rules', 'allow', 1)],
  },
  {
    name: 'first entry is rule 0',
    policies: [TWO_RULES],
    dir: 'ingress',
    from: 'dev/access-1',
    to: NGINX,
    port: 80,
    enforced: [kd('two-rules', 'allow', 0)],
  },
  {
    name: 'first entry port mismatch, no other rule',
    policies: [TWO_RULES],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 81,
    enforced: [kd('two-rules', 'deny', -1)],
  },
  {
    name: 'second peer is rule 1',
    policies: [TWO_PEERS],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [kd('two-peers', 'allow', 1)],
  },
  {
    name: 'first peer is rule 0',
    policies: [TWO_PEERS],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [kd('two-peers', 'allow', 0)],
  },
  {
    name: 'expansion: UDP×api is rule 2',
    policies: [PROTO_EXPAND],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: '53/UDP',
    enforced: [kd('expand', 'allow', 2)],
  },
  {
    name: 'expansion: TCP×db is rule 1',
    policies: [PROTO_EXPAND],
    dir: 'ingress',
    from: DB,
    to: NGINX,
    port: 80,
    enforced: [kd('expand', 'allow', 1)],
  },
  {
    name: 'expansion: UDP×db is rule 3',
    policies: [PROTO_EXPAND],
    dir: 'ingress',
    from: DB,
    to: NGINX,
    port: '53/UDP',
    enforced: [kd('expand', 'allow', 3)],
  },
  {
    name: 'expansion: TCP 53 not allowed',
    policies: [PROTO_EXPAND],
    dir: 'ingress',
    from: DB,
    to: NGINX,
    port: 53,
    enforced: [kd('expand', 'deny', -1)],
  },
  {
    name: 'SCTP sorts first: rule 0',
    policies: [SCTP_FIRST],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '7777/SCTP',
    enforced: [kd('sctp-first', 'allow', 0)],
  },
  {
    name: 'SCTP sorts first: TCP is rule 1',
    policies: [SCTP_FIRST],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [kd('sctp-first', 'allow', 1)],
  },
  {
    name: 'protocol without port: any UDP port',
    policies: [ALL_UDP],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: '1234/UDP',
    enforced: [kd('all-udp', 'allow', 0)],
  },
  {
    name: 'protocol without port: TCP denied',
    policies: [ALL_UDP],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 1234,
    enforced: [kd('all-udp', 'deny', -1)],
  },
  {
    name: 'two policies: first by name matches',
    policies: [ALLOW_B, ALLOW_A],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-a', 'allow', 0)],
  },
  {
    name: 'two policies: second matches, one hit',
    policies: [ALLOW_A, ALLOW_B],
    dir: 'ingress',
    from: OTHER,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-b', 'allow', 0)],
  },
  {
    name: 'two policies: end-of-tier names the last',
    policies: [ALLOW_A, ALLOW_B],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-b', 'deny', -1)],
  },
  {
    name: 'egress to db:5432',
    policies: [EGRESS_DB],
    dir: 'egress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [kd('api-egress', 'allow', 0)],
  },
  {
    name: 'egress to db: wrong port',
    policies: [EGRESS_DB],
    dir: 'egress',
    from: API,
    to: DB,
    port: 80,
    enforced: [kd('api-egress', 'deny', -1)],
  },
  {
    name: 'egress to the internet denied',
    policies: [EGRESS_DB],
    dir: 'egress',
    from: API,
    to: EXT,
    port: 443,
    enforced: [kd('api-egress', 'deny', -1)],
  },
  {
    name: 'egress-only policy: ingress profile',
    policies: [EGRESS_DB],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 8080,
    enforced: [profile('web')],
  },
  {
    name: 'implied types: egress rules add Egress',
    policies: [IMPLIED_EGRESS],
    dir: 'egress',
    from: API,
    to: DB,
    port: 1,
    enforced: [kd('implied', 'allow', 0)],
  },
  {
    name: 'implied types: Ingress always, no rules = deny',
    policies: [IMPLIED_EGRESS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 8080,
    enforced: [kd('implied', 'deny', -1)],
  },
  {
    name: 'implied types: egress [] adds no Egress',
    policies: [EMPTY_EGRESS],
    dir: 'egress',
    from: API,
    to: EXT,
    port: 443,
    enforced: [profile('web')],
  },
  {
    name: 'egress ipBlock 0/0 except 10/8: internet',
    policies: [EGRESS_INTERNET],
    dir: 'egress',
    from: API,
    to: EXT,
    port: 443,
    enforced: [kd('internet', 'allow', 0)],
  },
  {
    name: 'egress ipBlock except: pod network denied',
    policies: [EGRESS_INTERNET],
    dir: 'egress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [kd('internet', 'deny', -1)],
  },
  {
    name: 'egress named port on the destination pod',
    policies: [EGRESS_NAMED],
    dir: 'egress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [kd('egress-named', 'allow', 0)],
  },
  {
    name: 'egress named port: destination lacks it',
    policies: [EGRESS_NAMED],
    dir: 'egress',
    from: API,
    to: DB,
    port: 80,
    enforced: [kd('egress-named', 'deny', -1)],
  },
  {
    name: 'egress named port: source own ports do not count',
    policies: [EGRESS_NAMED],
    dir: 'egress',
    from: API,
    to: EXT,
    port: 8080,
    enforced: [kd('egress-named', 'deny', -1)],
  },
  {
    name: 'ipBlock IPv6 inside',
    policies: [V6_BLOCK],
    dir: 'ingress',
    from: '2001:db8::5',
    to: NGINX,
    port: 80,
    enforced: [kd('v6', 'allow', 0)],
  },
  {
    name: 'ipBlock IPv6 outside',
    policies: [V6_BLOCK],
    dir: 'ingress',
    from: '2001:db9::5',
    to: NGINX,
    port: 80,
    enforced: [kd('v6', 'deny', -1)],
  },
  {
    name: 'ipBlock IPv6 vs IPv4 peer',
    policies: [V6_BLOCK],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [kd('v6', 'deny', -1)],
  },
  {
    name: 'deny-all plus allow: allow wins by name',
    policies: [DENY_ALL_WEB, ALLOW_ACCESS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [kd('allow-access', 'allow', 0)],
  },
  {
    name: 'deny-all plus allow: end-of-tier names the last (default-deny)',
    policies: [DENY_ALL_WEB, ALLOW_ACCESS],
    dir: 'ingress',
    from: OTHER,
    to: NGINX,
    port: 80,
    enforced: [kd('default-deny', 'deny', -1)],
  },
  {
    name: 'SPEC §7 example without tier: dst',
    policies: [DEMO_ALLOW],
    dir: 'ingress',
    from: 'policy-demo/access-1',
    to: 'policy-demo/nginx-1',
    port: 80,
    enforced: [kd('allow-access', 'allow', 0, 'policy-demo')],
  },
  {
    name: 'SPEC §7 example without tier: src',
    policies: [DEMO_ALLOW],
    dir: 'egress',
    from: 'policy-demo/access-1',
    to: 'policy-demo/nginx-1',
    port: 80,
    enforced: [profile('policy-demo')],
  },
];

test(`Kubernetes NetworkPolicy: ${CASES.length} hand-computed traces`, () => {
  assert.ok(CASES.length >= 60);
  for (const c of CASES) runCase(c);
});

test('the local endpoint is not a pod: no trace', () => {
  const w = new World([DENY_ALL_WEB]);
  const t = w.trace('ingress', NGINX, EXT, 80);
  assert.deepEqual([t.enforced, t.pending, t.all], [[], [], []]);
});

test('an invalid policy is skipped with a warning naming it and the field; the others apply', () => {
  const bad = knp('web', 'bad', {
    podSelector: { matchExpressions: [{ key: 'app', operator: 'Equals', values: ['x'] }] },
  });
  const badPort = knp('web', 'bad-port', { podSelector: {}, ingress: [{ ports: [{ port: 70000 }] }] });
  const w = new World([bad, badPort, ALLOW_ACCESS]);
  assert.deepEqual(w.warnings, [
    'metadata: NetworkPolicy web/bad.spec.podSelector.matchExpressions[0].operator: must be In, NotIn, Exists or DoesNotExist, got "Equals"; policy skipped',
    'metadata: NetworkPolicy web/bad-port.spec.ingress[0].ports[0].port: port must be 0-65535, got 70000; policy skipped',
  ]);
  assert.deepEqual(w.trace('ingress', ACCESS, NGINX, 80).enforced, [kd('allow-access', 'allow', 0)]);
});

test('full trace strings carry their index', () => {
  const w = new World([DENY_ALL_WEB]);
  const t = w.engine.evaluate(
    'ingress',
    w.resolver.resolve('10.0.2.1', 0),
    w.resolver.resolve('10.0.1.1', 0),
    '10.0.2.1',
    '10.0.1.1',
    6,
    40000,
    80,
  );
  assert.equal(
    t.json,
    '{"all_policies":["0|default|web/knp.default.default-deny|deny|-1"],"enforced_policies":["0|default|web/knp.default.default-deny|deny|-1"],"pending_policies":["0|default|web/knp.default.default-deny|deny|-1"]}',
  );
  assert.equal(t.verdict, 'deny');
});
