// The one serializer of a record: the lines the daemon writes (flushLineIterator, in the
// daemon's batches), which flush() parses for the other tests.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inBatches, LineBatchBuilder } from '../../../src/export/batch.ts';
import { AT_SRC, F1, F2, k0, metadata, pod, resolverWith, upd } from './helpers.ts';

describe('lines', () => {
  test('each line is JSON.stringify of its parsed record, with labels, policies and services off', () => {
    const md = metadata({ pods: [pod('ns', 'a-1', '10.1.0.1', 'a-', { app: 'a"quoted"' })] });
    const make = () =>
      k0(resolverWith(md), {
        includeLabels: false,
        includePolicies: false,
        includeService: false,
        nodeName: 'n"1',
      } as never);
    const [a, b] = [make(), make()];
    for (const x of [a, b]) {
      x.observe(upd({ srcIp: '10.1.0.1', dstIp: '8.8.8.8', proto: 1, srcPort: 0, dstPort: 0, ...AT_SRC }));
      x.observe(upd({ srcIp: '10.1.0.1', dstIp: '10.1.0.9', origBytes: 3 }), 'deny');
    }
    const lines = [...b.flushLineIterator(F1)];
    assert.equal(lines.length, 2);
    assert.deepEqual(
      lines,
      a.flush(F1).map((r) => JSON.stringify(r)),
    );
  });

  test("the daemon's batches hold the same lines; a batch taken after the next flush throws", () => {
    const [a, b] = [k0(), k0()];
    for (const x of [a, b])
      for (let i = 0; i < 5; i++) x.observe(upd({ srcIp: '10.1.0.1', dstIp: '8.8.8.8', srcPort: 40000 + i }));
    const chunks = [...inBatches(b.flushLineIterator(F1), new LineBatchBuilder(1 << 20, 2))].map((x) =>
      x.lines(),
    );
    assert.deepEqual(
      chunks.map((c) => c.length),
      [2, 2, 1],
    );
    assert.deepEqual(chunks.flat(), [...a.flushLineIterator(F1)]);
    const it = inBatches(b.flushLineIterator(F2), new LineBatchBuilder(1 << 20, 2));
    b.flush(F2 + 1000);
    assert.throws(() => it.next(), /after the next flush/);
  });
});
