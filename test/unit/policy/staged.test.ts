// Staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy,
// StagedKubernetesNetworkPolicy): enforced, pending and all traces, hand-computed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Case, profile, runCase, World } from './world.ts';

const V3 = 'projectcalico.org/v3';
const obj = (kind: string, name: string, spec: object, ns?: string, apiVersion = V3): object => ({
  apiVersion,
  kind,
  metadata: ns === undefined ? { name } : { name, namespace: ns },
  spec,
});
const SECURITY = obj('Tier', 'security', { order: 100 });
const PLATFORM = obj('Tier', 'platform', { order: 200 });
const ENF_ALLOW = obj(
  'NetworkPolicy',
  'allow-access',
  {
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
  },
  'web',
  'networking.k8s.io/v1',
);
const DENY_ALL_WEB = obj(
  'NetworkPolicy',
  'default-deny',
  { podSelector: {}, policyTypes: ['Ingress'] },
  'web',
  'networking.k8s.io/v1',
);
const STG_DENY = obj(
  'StagedNetworkPolicy',
  'lockdown',
  { order: 1, selector: "app == 'nginx'", ingress: [{ action: 'Deny' }] },
  'web',
);
const STG_DENY_LATE = obj(
  'StagedNetworkPolicy',
  'lockdown-late',
  { order: 2000, selector: "app == 'nginx'", ingress: [{ action: 'Deny' }] },
  'web',
);
const SGNP_GATE = obj('StagedGlobalNetworkPolicy', 'gate', {
  tier: 'security',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Allow', source: { selector: "app == 'access'" } }],
});
const SGNP_PASS = obj('StagedGlobalNetworkPolicy', 'pass', {
  tier: 'security',
  selector: 'all()',
  ingress: [{ action: 'Pass' }],
});
const SKNP_REPLACE = obj(
  'StagedKubernetesNetworkPolicy',
  'allow-access',
  {
    podSelector: { matchLabels: { app: 'nginx' } },
    ingress: [
      {
        from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'other' } } }],
        ports: [{ port: 'http' }],
      },
    ],
  },
  'web',
);
const SKNP_DENY = obj(
  'StagedKubernetesNetworkPolicy',
  'sk',
  { podSelector: {}, policyTypes: ['Ingress'] },
  'web',
);
const PASS_ALL = obj('GlobalNetworkPolicy', 'pass-all', {
  tier: 'security',
  selector: 'all()',
  types: ['Ingress', 'Egress'],
  ingress: [{ action: 'Pass' }],
  egress: [{ action: 'Pass' }],
});
const SG5 = obj('StagedGlobalNetworkPolicy', 'gate5', {
  tier: 'security',
  order: 5,
  selector: "app == 'nginx'",
  ingress: [{ action: 'Deny', source: { nets: ['203.0.113.0/24'] } }],
});
const STG_ALLOW_EXT = obj(
  'StagedNetworkPolicy',
  'allow-ext',
  { order: 500, selector: 'all()', ingress: [{ action: 'Allow', source: { nets: ['203.0.113.0/24'] } }] },
  'web',
);
const ENF_AA = obj('GlobalNetworkPolicy', 'allow-access', {
  tier: 'security',
  order: 10,
  selector: "app == 'nginx'",
  ingress: [{ action: 'Allow', source: { selector: "app == 'access'" } }],
});
const STG_SD = obj('StagedGlobalNetworkPolicy', 'deny-all', {
  tier: 'security',
  order: 20,
  selector: "app == 'nginx'",
  ingress: [{ action: 'Deny' }],
});
const S1 = obj(
  'StagedNetworkPolicy',
  's1',
  {
    order: 1,
    selector: "app == 'nginx'",
    ingress: [{ action: 'Allow', source: { nets: ['203.0.113.0/24'] } }],
  },
  'web',
);
const S2 = obj(
  'StagedNetworkPolicy',
  's2',
  { order: 2, selector: "app == 'nginx'", ingress: [{ action: 'Deny' }] },
  'web',
);
const SC = obj('StagedNetworkPolicy', 'c', { selector: 'all()', ingress: [{ action: 'Deny' }] }, 'client');
const PB = obj('StagedGlobalNetworkPolicy', 'block', {
  tier: 'platform',
  selector: "app == 'nginx'",
  ingress: [{ action: 'Deny', source: { nets: ['203.0.113.0/24'] } }],
});

const NGINX = 'web/nginx-1';
const ACCESS = 'client/access-1';
const OTHER = 'client/other-1';
const API = 'web/api-1';
const EXT = '203.0.113.5';
const A = 'default|web/knp.default.allow-access|';
const LD = 'default|web/staged:default.lockdown|';
const LL = 'default|web/staged:default.lockdown-late|';
const SG = 'security|staged:security.gate|';
const SP = 'security|staged:security.pass|';
const DD = 'default|web/knp.default.default-deny|';
const SKR = 'default|web/staged:knp.default.allow-access|';
const SK = 'default|web/staged:knp.default.sk|';
const PA = 'security|security.pass-all|';
const G5 = 'security|staged:security.gate5|';
const AE = 'default|web/staged:default.allow-ext|';
const AA = 'security|security.allow-access|';
const SD = 'security|staged:security.deny-all|';
const S1H = 'default|web/staged:default.s1|';
const S2H = 'default|web/staged:default.s2|';
const SCH = 'default|client/staged:default.c|';
const PBH = 'platform|staged:platform.block|';
const W = profile('web');
const C = profile('client');

type Row = [string, 'ingress' | 'egress', string, string, number | string, string[], string[], string[]];
const SCENARIOS: [string, object[], Row[]][] = [
  [
    'A staged deny before an enforced allow',
    [ENF_ALLOW, STG_DENY],
    [
      [
        'staged deny over enforced allow',
        'ingress',
        ACCESS,
        NGINX,
        80,
        [`${A}allow|0`],
        [`${LD}deny|0`],
        [`${LD}deny|0`, `${A}allow|0`],
      ],
      [
        'both deny',
        'ingress',
        OTHER,
        NGINX,
        80,
        [`${A}deny|-1`],
        [`${LD}deny|0`],
        [`${LD}deny|0`, `${A}deny|-1`],
      ],
      [
        'internet',
        'ingress',
        EXT,
        NGINX,
        80,
        [`${A}deny|-1`],
        [`${LD}deny|0`],
        [`${LD}deny|0`, `${A}deny|-1`],
      ],
      [
        'other port',
        'ingress',
        API,
        NGINX,
        9090,
        [`${A}deny|-1`],
        [`${LD}deny|0`],
        [`${LD}deny|0`, `${A}deny|-1`],
      ],
      ['unselected pod', 'ingress', ACCESS, API, 8080, [W], [W], [W]],
      ['egress unaffected', 'egress', NGINX, EXT, 443, [W], [W], [W]],
      ['source egress unaffected', 'egress', ACCESS, NGINX, 80, [C], [C], [C]],
      [
        'udp',
        'ingress',
        ACCESS,
        NGINX,
        '80/UDP',
        [`${A}deny|-1`],
        [`${LD}deny|0`],
        [`${LD}deny|0`, `${A}deny|-1`],
      ],
    ],
  ],
  [
    'B staged deny after an enforced allow',
    [ENF_ALLOW, STG_DENY_LATE],
    [
      [
        'enforced allow first',
        'ingress',
        ACCESS,
        NGINX,
        80,
        [`${A}allow|0`],
        [`${A}allow|0`],
        [`${A}allow|0`],
      ],
      [
        'staged deny after no match',
        'ingress',
        OTHER,
        NGINX,
        80,
        [`${A}deny|-1`],
        [`${LL}deny|0`],
        [`${LL}deny|0`, `${A}deny|-1`],
      ],
      [
        'internet',
        'ingress',
        EXT,
        NGINX,
        80,
        [`${A}deny|-1`],
        [`${LL}deny|0`],
        [`${LL}deny|0`, `${A}deny|-1`],
      ],
      [
        'udp',
        'ingress',
        ACCESS,
        NGINX,
        '80/UDP',
        [`${A}deny|-1`],
        [`${LL}deny|0`],
        [`${LL}deny|0`, `${A}deny|-1`],
      ],
      ['unselected', 'ingress', ACCESS, API, 8080, [W], [W], [W]],
    ],
  ],
  [
    'C a tier with only staged policies',
    [SECURITY, SGNP_GATE],
    [
      ['staged allow', 'ingress', ACCESS, NGINX, 80, [W], [`${SG}allow|0`], [`${SG}allow|0`, W]],
      ['staged end-of-tier', 'ingress', OTHER, NGINX, 80, [W], [`${SG}deny|-1`], [`${SG}deny|-1`, W]],
      ['internet', 'ingress', EXT, NGINX, 80, [W], [`${SG}deny|-1`], [`${SG}deny|-1`, W]],
      ['same namespace', 'ingress', API, NGINX, 80, [W], [`${SG}deny|-1`], [`${SG}deny|-1`, W]],
      ['unselected', 'ingress', ACCESS, API, 8080, [W], [W], [W]],
      ['ingress-only staged, egress', 'egress', NGINX, EXT, 443, [W], [W], [W]],
      [
        'GNP selector in any namespace',
        'ingress',
        'dev/access-1',
        NGINX,
        80,
        [W],
        [`${SG}allow|0`],
        [`${SG}allow|0`, W],
      ],
    ],
  ],
  [
    'D staged pass before an enforced default deny',
    [SECURITY, SGNP_PASS, DENY_ALL_WEB],
    [
      [
        'pass then deny',
        'ingress',
        ACCESS,
        NGINX,
        80,
        [`${DD}deny|-1`],
        [`${SP}pass|0`, `${DD}deny|-1`],
        [`${SP}pass|0`, `${DD}deny|-1`],
      ],
      [
        'pass then deny (api)',
        'ingress',
        ACCESS,
        API,
        8080,
        [`${DD}deny|-1`],
        [`${SP}pass|0`, `${DD}deny|-1`],
        [`${SP}pass|0`, `${DD}deny|-1`],
      ],
      [
        'pass then deny (other)',
        'ingress',
        OTHER,
        NGINX,
        80,
        [`${DD}deny|-1`],
        [`${SP}pass|0`, `${DD}deny|-1`],
        [`${SP}pass|0`, `${DD}deny|-1`],
      ],
      ['pass then profile', 'ingress', ACCESS, OTHER, 80, [C], [`${SP}pass|0`, C], [`${SP}pass|0`, C]],
      ['egress', 'egress', NGINX, EXT, 443, [W], [W], [W]],
    ],
  ],
  [
    'E a staged KNP replacing the enforced one of the same name',
    [ENF_ALLOW, SKNP_REPLACE],
    [
      [
        'enforced allows, replacement denies',
        'ingress',
        ACCESS,
        NGINX,
        80,
        [`${A}allow|0`],
        [`${SKR}deny|-1`],
        [`${A}allow|0`],
      ],
      [
        'enforced denies, replacement allows',
        'ingress',
        OTHER,
        NGINX,
        80,
        [`${A}deny|-1`],
        [`${SKR}allow|0`],
        [`${SKR}allow|0`, `${A}deny|-1`],
      ],
      ['both deny', 'ingress', EXT, NGINX, 80, [`${A}deny|-1`], [`${SKR}deny|-1`], [`${A}deny|-1`]],
      ['both deny, port', 'ingress', API, NGINX, 9090, [`${A}deny|-1`], [`${SKR}deny|-1`], [`${A}deny|-1`]],
      ['unselected', 'ingress', ACCESS, API, 8080, [W], [W], [W]],
    ],
  ],
  [
    'F a staged KNP default deny',
    [SKNP_DENY],
    [
      ['staged end-of-tier', 'ingress', ACCESS, NGINX, 80, [W], [`${SK}deny|-1`], [`${SK}deny|-1`, W]],
      ['staged end-of-tier (api)', 'ingress', ACCESS, API, 8080, [W], [`${SK}deny|-1`], [`${SK}deny|-1`, W]],
      ['egress', 'egress', NGINX, EXT, 443, [W], [W], [W]],
      ['client egress', 'egress', ACCESS, NGINX, 80, [C], [C], [C]],
      ['client ingress', 'ingress', ACCESS, OTHER, 80, [C], [C], [C]],
    ],
  ],
  [
    'G a staged deny before an enforced pass in one tier',
    [SECURITY, PASS_ALL, SG5],
    [
      [
        'staged no match',
        'ingress',
        ACCESS,
        NGINX,
        80,
        [`${PA}pass|0`, W],
        [`${PA}pass|0`, W],
        [`${PA}pass|0`, W],
      ],
      [
        'staged deny',
        'ingress',
        EXT,
        NGINX,
        80,
        [`${PA}pass|0`, W],
        [`${G5}deny|0`],
        [`${G5}deny|0`, `${PA}pass|0`, W],
      ],
      [
        'staged unselected',
        'ingress',
        ACCESS,
        API,
        8080,
        [`${PA}pass|0`, W],
        [`${PA}pass|0`, W],
        [`${PA}pass|0`, W],
      ],
      ['egress pass', 'egress', NGINX, EXT, 443, [`${PA}pass|0`, W], [`${PA}pass|0`, W], [`${PA}pass|0`, W]],
    ],
  ],
  [
    'H a staged allow before an enforced default deny',
    [DENY_ALL_WEB, STG_ALLOW_EXT],
    [
      [
        'staged allow',
        'ingress',
        EXT,
        NGINX,
        80,
        [`${DD}deny|-1`],
        [`${AE}allow|0`],
        [`${AE}allow|0`, `${DD}deny|-1`],
      ],
      ['no staged match', 'ingress', ACCESS, NGINX, 80, [`${DD}deny|-1`], [`${DD}deny|-1`], [`${DD}deny|-1`]],
      [
        'staged allow (api)',
        'ingress',
        '203.0.113.9',
        API,
        8080,
        [`${DD}deny|-1`],
        [`${AE}allow|0`],
        [`${AE}allow|0`, `${DD}deny|-1`],
      ],
      ['egress', 'egress', NGINX, EXT, 443, [W], [W], [W]],
    ],
  ],
  [
    'I an enforced allow then a staged deny in a tier',
    [SECURITY, ENF_AA, STG_SD],
    [
      ['enforced allow', 'ingress', ACCESS, NGINX, 80, [`${AA}allow|0`], [`${AA}allow|0`], [`${AA}allow|0`]],
      [
        'staged deny, enforced end-of-tier',
        'ingress',
        OTHER,
        NGINX,
        80,
        [`${AA}deny|-1`],
        [`${SD}deny|0`],
        [`${SD}deny|0`, `${AA}deny|-1`],
      ],
      [
        'internet',
        'ingress',
        EXT,
        NGINX,
        80,
        [`${AA}deny|-1`],
        [`${SD}deny|0`],
        [`${SD}deny|0`, `${AA}deny|-1`],
      ],
      [
        'same namespace',
        'ingress',
        API,
        NGINX,
        9090,
        [`${AA}deny|-1`],
        [`${SD}deny|0`],
        [`${SD}deny|0`, `${AA}deny|-1`],
      ],
      [
        'any namespace',
        'ingress',
        'dev/access-1',
        NGINX,
        80,
        [`${AA}allow|0`],
        [`${AA}allow|0`],
        [`${AA}allow|0`],
      ],
      ['unselected', 'ingress', ACCESS, API, 8080, [W], [W], [W]],
    ],
  ],
  [
    'J two staged policies in one tier',
    [S1, S2],
    [
      [
        'both staged hits in all',
        'ingress',
        EXT,
        NGINX,
        80,
        [W],
        [`${S1H}allow|0`],
        [`${S1H}allow|0`, `${S2H}deny|0`, W],
      ],
      ['second staged only', 'ingress', ACCESS, NGINX, 80, [W], [`${S2H}deny|0`], [`${S2H}deny|0`, W]],
      ['unselected', 'ingress', ACCESS, API, 8080, [W], [W], [W]],
      [
        'no except',
        'ingress',
        '203.0.113.200',
        NGINX,
        80,
        [W],
        [`${S1H}allow|0`],
        [`${S1H}allow|0`, `${S2H}deny|0`, W],
      ],
    ],
  ],
  [
    'K staged policy of another namespace',
    [SC],
    [
      ['selected in client', 'ingress', ACCESS, OTHER, 80, [C], [`${SCH}deny|0`], [`${SCH}deny|0`, C]],
      ['web untouched', 'ingress', ACCESS, NGINX, 80, [W], [W], [W]],
      ['client egress untouched', 'egress', ACCESS, NGINX, 80, [C], [C], [C]],
      ['selected from web', 'ingress', NGINX, ACCESS, 80, [C], [`${SCH}deny|0`], [`${SCH}deny|0`, C]],
    ],
  ],
  [
    'L an enforced pass, a staged-only tier, then the default tier',
    [SECURITY, PLATFORM, PASS_ALL, PB, ENF_ALLOW],
    [
      [
        'staged deny in the middle tier',
        'ingress',
        EXT,
        NGINX,
        80,
        [`${PA}pass|0`, `${A}deny|-1`],
        [`${PA}pass|0`, `${PBH}deny|0`],
        [`${PA}pass|0`, `${PBH}deny|0`, `${A}deny|-1`],
      ],
      [
        'staged end-of-tier recorded, enforced continues',
        'ingress',
        ACCESS,
        NGINX,
        80,
        [`${PA}pass|0`, `${A}allow|0`],
        [`${PA}pass|0`, `${PBH}deny|-1`],
        [`${PA}pass|0`, `${PBH}deny|-1`, `${A}allow|0`],
      ],
      [
        'unselected by staged',
        'ingress',
        ACCESS,
        API,
        8080,
        [`${PA}pass|0`, W],
        [`${PA}pass|0`, W],
        [`${PA}pass|0`, W],
      ],
      ['egress', 'egress', NGINX, EXT, 443, [`${PA}pass|0`, W], [`${PA}pass|0`, W], [`${PA}pass|0`, W]],
    ],
  ],
];

const CASES: Case[] = SCENARIOS.flatMap(([scenario, policies, rows]) =>
  rows.map(([name, dir, from, to, port, enforced, pending, all]) => ({
    name: `${scenario}: ${name}`,
    policies,
    dir,
    from,
    to,
    port,
    enforced,
    pending,
    all,
  })),
);

test(`staged policies: ${CASES.length} hand-computed enforced/pending/all traces`, () => {
  assert.ok(CASES.length >= 60);
  for (const c of CASES) runCase(c);
});

test('stagedAction Delete is reported and not evaluated', () => {
  const w = new World([
    obj('StagedNetworkPolicy', 'del', { stagedAction: 'Delete', selector: 'all()' }, 'web'),
  ]);
  assert.deepEqual(w.warnings, [
    'metadata: StagedNetworkPolicy web/del.spec.stagedAction: only Set is evaluated, got "Delete"; policy skipped',
  ]);
  assert.deepEqual(w.trace('ingress', ACCESS, NGINX, 80).pending, [W]);
});
