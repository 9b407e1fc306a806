// Issue 14 item 11: whatever the metadata file holds, the parser either returns metadata
// of the documented shape or throws its own MetadataParseError naming the file; never a
// ReferenceError (unresolved YAML alias), RangeError (stack overflow on deep nesting or
// an alias cycle) or TypeError (an object where a string was expected).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { type ClusterMetadata, MetadataParseError, parseClusterMetadata } from '../../../src/enrich/kube.ts';

const PATH = '/etc/flowlogd/metadata.yaml';

/** Parses `text`; returns the metadata or the MetadataParseError, fails on anything else. */
function parseOrOwnError(text: string): ClusterMetadata | MetadataParseError {
  try {
    return parseClusterMetadata(text, PATH).metadata;
  } catch (err) {
    if (!(err instanceof MetadataParseError)) {
      assert.fail(
        `${(err as Error).name}: ${(err as Error).message} for ${JSON.stringify(text.slice(0, 120))}`,
      );
    }
    assert.equal(err.path, PATH);
    assert.ok(err.message.startsWith(`${PATH}: `), err.message);
    return err;
  }
}

function assertShape(md: ClusterMetadata): void {
  const isStr = (s: unknown) => typeof s === 'string' && s !== '';
  const labelsOk = (l: unknown) =>
    typeof l === 'object' && l !== null && Object.values(l).every((v) => typeof v === 'string');
  for (const p of md.pods) {
    assert.ok(isStr(p.name) && isStr(p.namespace) && labelsOk(p.labels), JSON.stringify(p));
    assert.ok(p.ips.every(isStr) && typeof p.hostNetwork === 'boolean');
  }
  for (const s of md.services) {
    assert.ok(isStr(s.name) && isStr(s.namespace) && s.clusterIps.every(isStr));
    assert.ok(s.ports.every((p) => Number.isInteger(p.port) && typeof p.protocol === 'string'));
  }
  for (const n of md.nodes) assert.ok(isStr(n.name) && labelsOk(n.labels) && n.ips.every(isStr));
  for (const n of md.namespaces) assert.ok(isStr(n.name) && labelsOk(n.labels));
  for (const n of md.networkSets) assert.ok(isStr(n.name) && n.nets.every(isStr));
}

function check(text: string): void {
  const r = parseOrOwnError(text);
  if (!(r instanceof MetadataParseError)) assertShape(r);
}

test('deep nesting, alias cycles and unresolved aliases give MetadataParseError with the path', () => {
  const deep = 100_000;
  const cases = [
    '['.repeat(deep) + ']'.repeat(deep), // JSON, deeper than any stack
    '['.repeat(deep),
    `${'{"items":['.repeat(deep)}${']}'.repeat(deep)}`,
    `kind: List\nitems: ${'['.repeat(deep)}${']'.repeat(deep)}\n`, // YAML flow
    `${'- '.repeat(5000)}x\n`, // YAML block
    '*a', // unresolved alias: ReferenceError in yaml's toJS
    'kind: List\nitems: *nothing\n',
    '&a [*a]', // a list that contains itself
    `&a [${'*a,'.repeat(2000)}]`, // ... 2000 times
    '{"kind": {"toString": "List"}, "items": [1]}',
    '[{"kind": "Pod", "metadata": {"name": {"toString": 1}}}]',
    'kind: Pod\nmetadata: {name: a, namespace: [1], labels: [a, b]}\nstatus: {podIPs: 7, podIP: {}}\n',
  ];
  const outcomes = cases.map((c) => {
    const r = parseOrOwnError(c);
    if (r instanceof MetadataParseError) return 'error';
    assertShape(r);
    return r.pods.length;
  });
  // The ones that are not documents of objects fail; the odd but readable ones parse.
  assert.deepEqual(outcomes, [
    'error',
    'error',
    'error',
    'error',
    'error',
    'error',
    'error',
    'error',
    'error',
    0,
    0,
    1,
  ]);
});

const KEYS = [
  'kind',
  'items',
  'metadata',
  'name',
  'namespace',
  'generateName',
  'labels',
  'spec',
  'status',
  'phase',
  'podIP',
  'podIPs',
  'ip',
  'hostNetwork',
  'nodeName',
  'clusterIP',
  'clusterIPs',
  'ports',
  'port',
  'protocol',
  'targetPort',
  'addresses',
  'type',
  'address',
  'nets',
  '__proto__',
  'constructor',
  'toString',
] as const;
const LEAVES = [
  'Pod',
  'Service',
  'Node',
  'Namespace',
  'List',
  'PodList',
  'NetworkSet',
  'GlobalNetworkSet',
  'InternalIP',
  'Running',
  'Succeeded',
  '10.0.0.1',
  'fd00::1',
  '10.0.0.0/8',
  'None',
  '',
  'x',
  null,
  0,
  80,
  -1,
  1.5,
  true,
  false,
] as const;
const k8sish = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...LEAVES),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie('v'), { maxKeys: 6 }),
  ),
})).v;

test('property: any Kubernetes-like value, as JSON and as YAML, parses to the shape or fails cleanly', () => {
  fc.assert(
    fc.property(k8sish, (v) => {
      check(JSON.stringify(v) ?? 'null');
      check(stringify(v));
      check(stringify({ kind: 'List', items: [v, v] }));
    }),
    { numRuns: 3000 },
  );
});

test('property: arbitrary text and mangled valid files fail cleanly', () => {
  const valid = stringify({
    kind: 'List',
    items: [
      {
        kind: 'Pod',
        metadata: { name: 'a', namespace: 'n', labels: { x: 'y' } },
        status: { podIP: '10.0.0.1' },
      },
      { kind: 'Service', metadata: { name: 's' }, spec: { clusterIP: '10.96.0.1', ports: [{ port: 53 }] } },
    ],
  });
  fc.assert(
    fc.property(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.nat(valid.length),
      fc.nat(valid.length),
      fc.string({ maxLength: 8 }),
      (s, cut, at, insert) => {
        check(s);
        check(valid.slice(0, cut));
        check(valid.slice(0, at) + insert + valid.slice(at));
        check(JSON.stringify(JSON.parse(JSON.stringify({ kind: 'List', items: [s] }))));
      },
    ),
    { numRuns: 3000 },
  );
});
