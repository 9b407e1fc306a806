import assert from 'node:assert/strict';
import { test } from 'node:test';
import { METADATA_RESOURCES } from '../../../src/enrich/k8s-kinds.ts';
import { convertObject, type PodMeta } from '../../../src/enrich/kube.ts';

const pods = METADATA_RESOURCES.find((r) => r.name === 'pods')!;

function pod(name: string, labels: Record<string, string>) {
  return {
    metadata: { name, namespace: 'web', generateName: 'nginx-5f8c7-', labels },
    spec: { nodeName: 'node-1' },
    status: { phase: 'Running', podIP: '10.1.0.1' },
  };
}

test('API slim form: pods with the same labels share one labels object, in any key order', () => {
  const slim = (o: unknown) =>
    (pods.slim(JSON.parse(JSON.stringify(o)), 'test', []) as { meta: PodMeta }).meta;
  const a = slim(pod('a', { app: 'nginx', 'pod-template-hash': '5f8c7' }));
  const b = slim(pod('b', { 'pod-template-hash': '5f8c7', app: 'nginx' }));
  const c = slim(pod('c', { app: 'nginx', 'pod-template-hash': '99999' }));
  assert.equal(a.labels, b.labels, 'one object for one label set');
  assert.notEqual(a.labels, c.labels);
  assert.deepEqual(c.labels, { app: 'nginx', 'pod-template-hash': '99999' });
  // Otherwise the file source's slim form, field for field.
  const plain = convertObject('Pod', pod('a', { app: 'nginx', 'pod-template-hash': '5f8c7' }), 'test', []);
  assert.deepEqual(a, plain!.meta);
});
