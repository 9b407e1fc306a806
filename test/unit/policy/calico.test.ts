// Calico NetworkPolicy / GlobalNetworkPolicy traces with tiers, against hand-computed
// expectations.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Case, profile, runCase, World } from './world.ts';

const V3 = 'projectcalico.org/v3';
function tier(name: string, order?: number): object {
  return { apiVersion: V3, kind: 'Tier', metadata: { name }, spec: order === undefined ? {} : { order } };
}
function gnp(name: string, spec: object, apiVersion = V3): object {
  return { apiVersion, kind: 'GlobalNetworkPolicy', metadata: { name }, spec };
}
function cnp(ns: string, name: string, spec: object): object {
  return { apiVersion: V3, kind: 'NetworkPolicy', metadata: { name, namespace: ns }, spec };
}
function knp(ns: string, name: string, spec: object): object {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: ns },
    spec,
  };
}

const SECURITY = tier('security', 100);
const PLATFORM = tier('platform', 200);
const PASS_ALL = gnp('security.pass-all', {
  tier: 'security',
  selector: 'all()',
  types: ['Ingress', 'Egress'],
  ingress: [{ action: 'Pass' }],
  egress: [{ action: 'Pass' }],
});
const DEMO_ALLOW = knp('policy-demo', 'allow-access', {
  podSelector: { matchLabels: { app: 'nginx' } },
  ingress: [{ from: [{ podSelector: { matchLabels: { app: 'access' } } }], ports: [{ port: 'http' }] }],
});
const DENY_EXT = gnp('deny-ext', {
  tier: 'security',
  order: 10,
  selector: 'all()',
  ingress: [{ action: 'Deny', source: { nets: ['203.0.113.0/24'] } }, { action: 'Pass' }],
});
const NGINX_ONLY_ACCESS = gnp('nginx-gate', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Allow', source: { selector: "app == 'access'" } }],
});
const ORDERED = [
  gnp('second', { tier: 'platform', order: 20, selector: 'all()', ingress: [{ action: 'Allow' }] }),
  gnp('first', {
    tier: 'platform',
    order: 10,
    selector: "app == 'nginx'",
    ingress: [{ action: 'Deny', protocol: 'UDP' }],
  }),
  gnp('unordered', { tier: 'platform', selector: 'all()', ingress: [{ action: 'Deny' }] }),
  gnp('b-same', {
    tier: 'platform',
    order: 30,
    selector: "app == 'db'",
    ingress: [{ action: 'Deny', destination: { ports: [5432] }, protocol: 'TCP' }],
  }),
  gnp('a-same', {
    tier: 'platform',
    order: 30,
    selector: "app == 'db'",
    ingress: [{ action: 'Allow', destination: { ports: [5432] }, protocol: 'TCP' }],
  }),
];
const WEB_NP = cnp('web', 'web-np', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [
    {
      action: 'Allow',
      protocol: 'TCP',
      source: { selector: "app == 'api'" },
      destination: { ports: ['http'] },
    },
    {
      action: 'Allow',
      protocol: 'TCP',
      source: { namespaceSelector: "team == 'client'", selector: "app == 'access'" },
    },
    { action: 'Allow', protocol: 'TCP', source: { selector: "app == 'access'" } },
  ],
});
const DEFAULT_NP = cnp('web', 'plain', {
  selector: "app == 'api'",
  ingress: [{ action: 'Allow', source: { nets: ['10.0.2.0/24'], notNets: ['10.0.2.2/32'] } }],
});
const sel = (name: string, selector: string) =>
  gnp(name, { tier: 'security', selector, ingress: [{ action: 'Deny' }] });
const PORTS = gnp('ports', {
  tier: 'security',
  selector: "app == 'api'",
  ingress: [
    { action: 'Allow', protocol: 'TCP', destination: { ports: ['1000:2000', 8443] } },
    { action: 'Allow', protocol: 'TCP', destination: { ports: ['grpc'] } },
    { action: 'Allow', protocol: 'UDP', destination: { notPorts: ['0:1023'] } },
    { action: 'Allow', protocol: 'TCP', source: { ports: [53] } },
    { action: 'Deny' },
  ],
});
const PROTO = gnp('proto', {
  tier: 'security',
  selector: "app == 'db'",
  ingress: [
    { action: 'Allow', protocol: 'ICMP' },
    { action: 'Allow', notProtocol: 'TCP', ipVersion: 4 },
    { action: 'Allow', protocol: 132 },
  ],
});
const V6_ONLY = gnp('v6-only', {
  tier: 'security',
  selector: "app == 'db'",
  ingress: [{ action: 'Allow', ipVersion: 6 }],
});
const LOG = gnp('log-then-allow', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Log' }, { action: 'Allow' }],
});
const SA_POLICY = gnp('sa', {
  tier: 'security',
  serviceAccountSelector: "role == 'backend'",
  ingress: [{ action: 'Allow', source: { serviceAccounts: { names: ['reader'] } } }],
});
const SA_RULE_SEL = gnp('sa-sel', {
  tier: 'security',
  selector: "app == 'db'",
  ingress: [{ action: 'Allow', source: { serviceAccounts: { selector: "role == 'backend'" } } }],
});
const NS_SEL_GNP = gnp('ns-sel', {
  tier: 'security',
  namespaceSelector: "env == 'dev'",
  ingress: [{ action: 'Deny' }],
});
const RULE_NS_GLOBAL = gnp('global-ns', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Allow', source: { namespaceSelector: 'global()' } }],
});
const GNP_RULE_ANY_NS = gnp('any-ns', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Allow', source: { selector: "app == 'access'" } }],
});
const EGRESS_ONLY = gnp('egress-only', {
  tier: 'security',
  selector: "app == 'api'",
  egress: [{ action: 'Deny', destination: { nets: ['203.0.113.0/24'] } }],
});
const NOT_SEL = gnp('not-sel', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Allow', source: { notSelector: "app == 'other'" } }],
});
const CRD = gnp(
  'security.crd-style',
  { tier: 'security', selector: "app == 'db'", ingress: [{ action: 'Allow' }] },
  'crd.projectcalico.org/v1',
);
const UNORDERED_TIER = tier('late');
const LATE = gnp('late-allow', { tier: 'late', selector: 'all()', ingress: [{ action: 'Allow' }] });
const EARLY_DEFAULT = gnp('def-pass', { selector: "app == 'nginx'", ingress: [{ action: 'Pass' }] });
const DENY_ALL_WEB = knp('web', 'default-deny', { podSelector: {}, policyTypes: ['Ingress'] });

const NGINX = 'web/nginx-1';
const ACCESS = 'client/access-1';
const OTHER = 'client/other-1';
const API = 'web/api-1';
const DB = 'web/db-1';
const EXT = '203.0.113.5';
const s = (name: string, action: string, rule: number) => `security|security.${name}|${action}|${rule}`;
const p = (name: string, action: string, rule: number) => `platform|platform.${name}|${action}|${rule}`;

const CASES: Case[] = [
  // SPEC §7's worked example.
  {
    name: 'SPEC example: dst',
    policies: [SECURITY, PASS_ALL, DEMO_ALLOW],
    dir: 'ingress',
    from: 'policy-demo/access-1',
    to: 'policy-demo/nginx-1',
    port: 80,
    enforced: [s('pass-all', 'pass', 0), 'default|policy-demo/knp.default.allow-access|allow|0'],
  },
  {
    name: 'SPEC example: src',
    policies: [SECURITY, PASS_ALL, DEMO_ALLOW],
    dir: 'egress',
    from: 'policy-demo/access-1',
    to: 'policy-demo/nginx-1',
    port: 80,
    enforced: [s('pass-all', 'pass', 0), profile('policy-demo')],
  },
  {
    name: 'SPEC example: another pod',
    policies: [SECURITY, PASS_ALL, DEMO_ALLOW],
    dir: 'ingress',
    from: NGINX,
    to: 'policy-demo/nginx-1',
    port: 80,
    enforced: [s('pass-all', 'pass', 0), 'default|policy-demo/knp.default.allow-access|deny|-1'],
  },
  {
    name: 'pass then no policy in default: profile',
    policies: [SECURITY, PASS_ALL],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [s('pass-all', 'pass', 0), profile('web')],
  },
  {
    name: 'pass then default deny',
    policies: [SECURITY, PASS_ALL, DENY_ALL_WEB],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [s('pass-all', 'pass', 0), 'default|web/knp.default.default-deny|deny|-1'],
  },
  {
    name: 'deny in first tier stops',
    policies: [SECURITY, DENY_EXT, DENY_ALL_WEB],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [s('deny-ext', 'deny', 0)],
  },
  {
    name: 'deny rule misses: pass rule 1',
    policies: [SECURITY, DENY_EXT, DENY_ALL_WEB],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [s('deny-ext', 'pass', 1), 'default|web/knp.default.default-deny|deny|-1'],
  },
  {
    name: 'two policies in a tier: first passes',
    policies: [SECURITY, DENY_EXT, PASS_ALL],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [s('deny-ext', 'pass', 1), profile('web')],
  },
  {
    name: 'end-of-tier deny in a named tier',
    policies: [SECURITY, NGINX_ONLY_ACCESS],
    dir: 'ingress',
    from: OTHER,
    to: NGINX,
    port: 80,
    enforced: [s('nginx-gate', 'deny', -1)],
  },
  {
    name: 'named tier allow',
    policies: [SECURITY, NGINX_ONLY_ACCESS],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [s('nginx-gate', 'allow', 0)],
  },
  {
    name: 'named tier: endpoint not selected, tier skipped',
    policies: [SECURITY, NGINX_ONLY_ACCESS],
    dir: 'ingress',
    from: OTHER,
    to: API,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'GNP rule selector: any namespace, not the internet',
    policies: [SECURITY, NGINX_ONLY_ACCESS],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [s('nginx-gate', 'deny', -1)],
  },
  {
    name: 'tier order: lower first',
    policies: [SECURITY, PLATFORM, ...ORDERED, PASS_ALL],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [s('pass-all', 'pass', 0), p('second', 'allow', 0)],
  },
  {
    name: 'tier order: reversed orders',
    policies: [tier('security', 300), PLATFORM, ...ORDERED, PASS_ALL],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [p('second', 'allow', 0)],
  },
  {
    name: 'policy order: order 10 before 20',
    policies: [PLATFORM, ...ORDERED],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: '53/UDP',
    enforced: [p('first', 'deny', 0)],
  },
  {
    name: 'policy order: 10 misses, 20 allows',
    policies: [PLATFORM, ...ORDERED],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 53,
    enforced: [p('second', 'allow', 0)],
  },
  {
    name: 'equal order: by name',
    policies: [PLATFORM, ...ORDERED],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 5432,
    enforced: [p('second', 'allow', 0)],
  },
  {
    name: 'equal order 30: a-same before b-same',
    policies: [PLATFORM, ...ORDERED.slice(3)],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 5432,
    enforced: [p('a-same', 'allow', 0)],
  },
  {
    name: 'equal order 30: end-of-tier names b-same',
    policies: [PLATFORM, ...ORDERED.slice(3)],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 80,
    enforced: [p('b-same', 'deny', -1)],
  },
  {
    name: 'unordered policy last',
    policies: [PLATFORM, ORDERED[2]!, ORDERED[0]!],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 80,
    enforced: [p('second', 'allow', 0)],
  },
  {
    name: 'unordered alone',
    policies: [PLATFORM, ORDERED[2]!],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 80,
    enforced: [p('unordered', 'deny', 0)],
  },
  {
    name: 'Calico NP name: ns/tier.name, named port',
    policies: [SECURITY, WEB_NP],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: ['security|web/security.web-np|allow|0'],
  },
  {
    name: 'Calico NP: named port mismatch falls to rule 2? no: api is not access',
    policies: [SECURITY, WEB_NP],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 9090,
    enforced: ['security|web/security.web-np|deny|-1'],
  },
  {
    name: 'Calico NP: rule namespaceSelector + selector',
    policies: [SECURITY, WEB_NP],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: ['security|web/security.web-np|allow|1'],
  },
  {
    name: 'Calico NP: rule namespaceSelector excludes dev',
    policies: [SECURITY, WEB_NP],
    dir: 'ingress',
    from: 'dev/access-1',
    to: NGINX,
    port: 80,
    enforced: ['security|web/security.web-np|deny|-1'],
  },
  {
    name: 'Calico NP: selector alone scoped to own namespace',
    policies: [SECURITY, WEB_NP, cnp('web', 'x', {})],
    dir: 'ingress',
    from: 'dev/access-1',
    to: NGINX,
    port: 80,
    enforced: ['security|web/security.web-np|deny|-1'],
  },
  {
    name: 'Calico NP: only selects own namespace',
    policies: [SECURITY, WEB_NP],
    dir: 'ingress',
    from: ACCESS,
    to: 'policy-demo/nginx-1',
    port: 80,
    enforced: [profile('policy-demo')],
  },
  {
    name: 'Calico NP in default tier: ns/default.name, nets',
    policies: [DEFAULT_NP],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 80,
    enforced: ['default|web/default.plain|allow|0'],
  },
  {
    name: 'notNets excludes one address',
    policies: [DEFAULT_NP],
    dir: 'ingress',
    from: OTHER,
    to: API,
    port: 80,
    enforced: ['default|web/default.plain|deny|-1'],
  },
  {
    name: 'nets: outside',
    policies: [DEFAULT_NP],
    dir: 'ingress',
    from: 'dev/tool-1',
    to: API,
    port: 80,
    enforced: ['default|web/default.plain|deny|-1'],
  },
  {
    name: 'selector ==',
    policies: [SECURITY, sel('x', "app == 'nginx'")],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector == no match',
    policies: [SECURITY, sel('x', "app == 'nginx'")],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'selector != matches absent key',
    policies: [SECURITY, sel('x', "app != 'access'")],
    dir: 'ingress',
    from: API,
    to: 'dev/tool-1',
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector != excludes',
    policies: [SECURITY, sel('x', "app != 'access'")],
    dir: 'ingress',
    from: API,
    to: 'dev/access-1',
    port: 80,
    enforced: [profile('dev')],
  },
  {
    name: 'selector in',
    policies: [SECURITY, sel('x', "app in {'db', 'api'}")],
    dir: 'ingress',
    from: NGINX,
    to: DB,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector in: no',
    policies: [SECURITY, sel('x', "app in {'db', 'api'}")],
    dir: 'ingress',
    from: DB,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'selector not in matches absent key',
    policies: [SECURITY, sel('x', "app not in {'access'}")],
    dir: 'ingress',
    from: API,
    to: 'dev/tool-1',
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector not in excludes',
    policies: [SECURITY, sel('x', "app not in {'access', 'nginx'}")],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'selector has()',
    policies: [SECURITY, sel('x', 'has(role)')],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector !has()',
    policies: [SECURITY, sel('x', '!has(role)')],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'selector &&',
    policies: [SECURITY, sel('x', "app == 'db' && role == 'primary'")],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector && one false',
    policies: [SECURITY, sel('x', "app == 'db' && role == 'replica'")],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'selector ||',
    policies: [SECURITY, sel('x', "app == 'none' || tier == 'fe'")],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector ! and parentheses',
    policies: [SECURITY, sel('x', "!(app == 'nginx' || app == 'api') && has(app)")],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'selector ! and parentheses: excluded',
    policies: [SECURITY, sel('x', "!(app == 'nginx' || app == 'api') && has(app)")],
    dir: 'ingress',
    from: DB,
    to: API,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'selector on Calico namespace label',
    policies: [SECURITY, sel('x', "projectcalico.org/namespace == 'client'")],
    dir: 'ingress',
    from: NGINX,
    to: OTHER,
    port: 80,
    enforced: [s('x', 'deny', 0)],
  },
  {
    name: 'ports: range low',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 1000,
    enforced: [s('ports', 'allow', 0)],
  },
  {
    name: 'ports: range high',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 2000,
    enforced: [s('ports', 'allow', 0)],
  },
  {
    name: 'ports: single number',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 8443,
    enforced: [s('ports', 'allow', 0)],
  },
  {
    name: 'ports: named (grpc=9000)',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 9000,
    enforced: [s('ports', 'allow', 1)],
  },
  {
    name: 'notPorts: high UDP port',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: '5353/UDP',
    enforced: [s('ports', 'allow', 2)],
  },
  {
    name: 'notPorts: low UDP port falls to Deny',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: '53/UDP',
    enforced: [s('ports', 'deny', 4)],
  },
  {
    name: 'source ports',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 80,
    srcPort: 53,
    enforced: [s('ports', 'allow', 3)],
  },
  {
    name: 'source ports: other source port',
    policies: [SECURITY, PORTS],
    dir: 'ingress',
    from: NGINX,
    to: API,
    port: 80,
    srcPort: 54,
    enforced: [s('ports', 'deny', 4)],
  },
  {
    name: 'protocol ICMP',
    policies: [SECURITY, PROTO],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '0/ICMP',
    enforced: [s('proto', 'allow', 0)],
  },
  {
    name: 'notProtocol TCP: UDP ok',
    policies: [SECURITY, PROTO],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '53/UDP',
    enforced: [s('proto', 'allow', 1)],
  },
  {
    name: 'protocol by number (132)',
    policies: [SECURITY, PROTO],
    dir: 'ingress',
    from: API,
    to: DB,
    port: '7777/SCTP',
    enforced: [s('proto', 'allow', 1)],
  },
  {
    name: 'notProtocol TCP: TCP end-of-tier',
    policies: [SECURITY, PROTO],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [s('proto', 'deny', -1)],
  },
  {
    name: 'ipVersion 6 excludes IPv4',
    policies: [SECURITY, V6_ONLY],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [s('v6-only', 'deny', -1)],
  },
  {
    name: 'Log continues to the next rule',
    policies: [SECURITY, LOG],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [s('log-then-allow', 'allow', 1)],
  },
  {
    name: 'serviceAccountSelector selects api-sa',
    policies: [SECURITY, SA_POLICY],
    dir: 'ingress',
    from: ACCESS,
    to: API,
    port: 80,
    enforced: [s('sa', 'allow', 0)],
  },
  {
    name: 'serviceAccounts names: wrong account',
    policies: [SECURITY, SA_POLICY],
    dir: 'ingress',
    from: OTHER,
    to: API,
    port: 80,
    enforced: [s('sa', 'deny', -1)],
  },
  {
    name: 'serviceAccountSelector: other pods unselected',
    policies: [SECURITY, SA_POLICY],
    dir: 'ingress',
    from: ACCESS,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'rule serviceAccounts selector',
    policies: [SECURITY, SA_RULE_SEL],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [s('sa-sel', 'allow', 0)],
  },
  {
    name: 'rule serviceAccounts selector: no',
    policies: [SECURITY, SA_RULE_SEL],
    dir: 'ingress',
    from: ACCESS,
    to: DB,
    port: 5432,
    enforced: [s('sa-sel', 'deny', -1)],
  },
  {
    name: 'GNP namespaceSelector selects dev pods',
    policies: [SECURITY, NS_SEL_GNP],
    dir: 'ingress',
    from: API,
    to: 'dev/tool-1',
    port: 80,
    enforced: [s('ns-sel', 'deny', 0)],
  },
  {
    name: 'GNP namespaceSelector: web not selected',
    policies: [SECURITY, NS_SEL_GNP],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'rule namespaceSelector global(): global network set',
    policies: [SECURITY, RULE_NS_GLOBAL],
    dir: 'ingress',
    from: '198.51.100.7',
    to: NGINX,
    port: 80,
    enforced: [s('global-ns', 'allow', 0)],
  },
  {
    name: 'rule namespaceSelector global(): pods excluded',
    policies: [SECURITY, RULE_NS_GLOBAL],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: [s('global-ns', 'deny', -1)],
  },
  {
    name: 'GNP rule selector matches every namespace',
    policies: [SECURITY, GNP_RULE_ANY_NS],
    dir: 'ingress',
    from: 'dev/access-1',
    to: NGINX,
    port: 80,
    enforced: [s('any-ns', 'allow', 0)],
  },
  {
    name: 'types default: egress rules only = Egress only',
    policies: [SECURITY, EGRESS_ONLY],
    dir: 'ingress',
    from: EXT,
    to: API,
    port: 80,
    enforced: [profile('web')],
  },
  {
    name: 'egress deny by nets',
    policies: [SECURITY, EGRESS_ONLY],
    dir: 'egress',
    from: API,
    to: EXT,
    port: 443,
    enforced: [s('egress-only', 'deny', 0)],
  },
  {
    name: 'egress end-of-tier',
    policies: [SECURITY, EGRESS_ONLY],
    dir: 'egress',
    from: API,
    to: DB,
    port: 5432,
    enforced: [s('egress-only', 'deny', -1)],
  },
  {
    name: 'notSelector: other excluded',
    policies: [SECURITY, NOT_SEL],
    dir: 'ingress',
    from: OTHER,
    to: NGINX,
    port: 80,
    enforced: [s('not-sel', 'deny', -1)],
  },
  {
    name: 'notSelector: the internet passes it',
    policies: [SECURITY, NOT_SEL],
    dir: 'ingress',
    from: EXT,
    to: NGINX,
    port: 80,
    enforced: [s('not-sel', 'allow', 0)],
  },
  {
    name: 'crd.projectcalico.org/v1, tier-prefixed name not doubled',
    policies: [SECURITY, CRD],
    dir: 'ingress',
    from: API,
    to: DB,
    port: 80,
    enforced: [s('crd-style', 'allow', 0)],
  },
  {
    name: 'tier without order after default',
    policies: [UNORDERED_TIER, LATE, EARLY_DEFAULT],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: ['default|default.def-pass|pass|0', 'late|late.late-allow|allow|0'],
  },
  {
    name: 'Tier order below default runs first',
    policies: [tier('late', 5), LATE, EARLY_DEFAULT],
    dir: 'ingress',
    from: API,
    to: NGINX,
    port: 80,
    enforced: ['late|late.late-allow|allow|0'],
  },
];

test(`Calico NetworkPolicy / GlobalNetworkPolicy with tiers: ${CASES.length} hand-computed traces`, () => {
  assert.ok(CASES.length >= 60);
  for (const c of CASES) runCase(c);
});

test('errors name the policy, the field and the value; the policy is skipped', () => {
  const w = new World([
    SECURITY,
    gnp('bad-sel', { tier: 'security', selector: "app = 'x'", ingress: [{ action: 'Allow' }] }),
    gnp('bad-action', { tier: 'security', ingress: [{ action: 'Accept' }] }),
    gnp('ports-no-proto', { tier: 'security', ingress: [{ action: 'Allow', destination: { ports: [80] } }] }),
    gnp('bad-range', {
      tier: 'security',
      ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: ['2000:1000'] } }],
    }),
    gnp('no-tier', { tier: 'nowhere', selector: "app == 'db'", ingress: [{ action: 'Allow' }] }),
    NGINX_ONLY_ACCESS,
  ]);
  assert.deepEqual(w.warnings, [
    'metadata: GlobalNetworkPolicy bad-sel.spec.selector: invalid selector "app = \'x\'" at 4: unexpected character "="; policy skipped',
    'metadata: GlobalNetworkPolicy bad-action.spec.ingress[0].action: must be Allow, Deny, Pass or Log, got "Accept"; policy skipped',
    'metadata: GlobalNetworkPolicy ports-no-proto.spec.ingress[0]: ports need protocol TCP, UDP, SCTP or UDPLite, got undefined; policy skipped',
    'metadata: GlobalNetworkPolicy bad-range.spec.ingress[0].destination.ports[0]: port range "2000:1000" has min > max; policy skipped',
    'metadata: tier "nowhere" of nowhere.no-tier has no Tier object; ordered last',
  ]);
  assert.deepEqual(w.trace('ingress', OTHER, NGINX, 80).enforced, [s('nginx-gate', 'deny', -1)]);
  assert.deepEqual(w.trace('ingress', OTHER, DB, 80).enforced, ['nowhere|nowhere.no-tier|allow|0']);
});

test('SPEC §7 worked example, word for word: full trace strings at dst, at src, and for another pod', () => {
  const allowAccess = knp('web', 'allow-access', {
    podSelector: { matchLabels: { app: 'nginx' } },
    ingress: [
      {
        from: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'policy-demo' } },
            podSelector: { matchLabels: { app: 'access' } },
          },
        ],
        ports: [{ port: 'http' }],
      },
    ],
  });
  const w = new World([SECURITY, PASS_ALL, allowAccess]);
  const full = (dir: 'ingress' | 'egress', from: string) => {
    const t = w.engine.evaluate(
      dir,
      w.resolver.resolve(w.ip(from), 0),
      w.resolver.resolve(w.ip(NGINX), 0),
      w.ip(from),
      w.ip(NGINX),
      6,
      40000,
      80,
    );
    return t.enforced_policies;
  };
  assert.deepEqual(full('ingress', 'policy-demo/access-1'), [
    '0|security|security.pass-all|pass|0',
    '1|default|web/knp.default.allow-access|allow|0',
  ]);
  assert.deepEqual(full('egress', 'policy-demo/access-1'), [
    '0|security|security.pass-all|pass|0',
    '1|__PROFILE__|__PROFILE__.kns.policy-demo|allow|0',
  ]);
  assert.deepEqual(full('ingress', ACCESS), [
    '0|security|security.pass-all|pass|0',
    '1|default|web/knp.default.allow-access|deny|-1',
  ]);
});
