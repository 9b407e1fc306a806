// A YAML List read a run of items at a time (yaml-items.ts) must give exactly what the
// same List parsed whole gives (here: its JSON form, which is parsed whole).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { parseClusterMetadata } from '../../../src/enrich/kube.ts';
import { CHUNK_BYTES, yamlDocuments } from '../../../src/enrich/yaml-items.ts';

function pods(n: number): object[] {
  return Array.from({ length: n }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `p-${i}`, namespace: `ns-${i % 7}`, labels: { app: `a${i % 3}`, 'x/y': 'z' } },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 80 }] }] },
    status: { podIP: `10.1.${i >> 8}.${i & 255}`, podIPs: [{ ip: `10.1.${i >> 8}.${i & 255}` }] },
  }));
}

test('a List larger than one run parses to the same metadata as its JSON, in both indent styles', () => {
  const list = { apiVersion: 'v1', kind: 'List', items: pods(3000), metadata: { resourceVersion: '' } };
  const whole = parseClusterMetadata(JSON.stringify(list), 'f');
  const indented = stringify(list); // items as "  - ": yaml's style
  const kubectl = stringify(list, { indentSeq: false }); // items as "- ": kubectl's style
  for (const text of [indented, kubectl]) {
    assert.ok(text.length > 2 * CHUNK_BYTES);
    const docs = [...yamlDocuments(text)];
    assert.equal(docs.length, 1);
    assert.equal(docs[0]!.split?.at, 'items');
    assert.ok([...docs[0]!.split!.runs()].length >= 3);
    assert.deepEqual(parseClusterMetadata(text, 'f'), whole);
  }
});

test('documents that cannot be split are parsed whole: an alias to another item, a Pod with items, a bare sequence', () => {
  const base = stringify({ kind: 'List', items: pods(2000) }, { indentSeq: false });
  // An anchor in the first item used by the last: the run holding the alias fails alone.
  const aliased = base
    .replace('labels:\n', 'labels: &l\n')
    .replace(/labels:\n(( {6}.*\n)+)(?![\s\S]*labels:\n)/, 'labels: *l\n');
  const md = parseClusterMetadata(aliased, 'f').metadata;
  assert.equal(md.pods.length, 2000);
  assert.deepEqual(md.pods[1999]!.labels, md.pods[0]!.labels);
  // A document with an items key that is not a List is one object.
  const notList = 'kind: Pod\nmetadata: {name: a}\nitems:\n- 1\nstatus: {podIP: 10.0.0.1}\n';
  assert.deepEqual(
    parseClusterMetadata(notList, 'f').metadata.pods.map((p) => p.ips),
    [['10.0.0.1']],
  );
  // Multi-document with a bare sequence, CRLF line ends and a trailing key after items.
  const multi = [
    '- {kind: Pod, metadata: {name: a}, status: {podIP: 10.0.0.1}}',
    '- {kind: Pod, metadata: {name: b}, status: {podIP: 10.0.0.2}}',
    '---',
    'kind: List',
    'items:',
    '- kind: Pod',
    '  metadata: {name: c}',
    '# a comment at column 0',
    '- {kind: Pod, metadata: {name: d}}',
    'metadata: {resourceVersion: "1"}',
    '',
  ].join('\r\n');
  assert.deepEqual(
    parseClusterMetadata(multi, 'f').metadata.pods.map((p) => p.name),
    ['a', 'b', 'c', 'd'],
  );
});
