// OTLP logs over HTTP against a receiver that decodes with the official OTLP schema.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { OtlpTransport, otlpUrl } from '../../../src/export/otlp.ts';
import { Spool } from '../../../src/export/spool.ts';
import { OtlpReceiver } from './otlp-receiver.ts';

let rx: OtlpReceiver;
afterEach(async () => {
  await rx?.close();
});

const flow = (i: number) => ({
  start_time: 1_700_000_000,
  end_time: 1_700_000_300 + i,
  source_ip: '10.0.0.1',
  source_port: 40000 + i,
  source_labels: { labels: ['app=a', 'tier=web'] },
  nat_outgoing_ports: null,
  proto: 'tcp',
  bytes_in: 1234 * i,
  policies: { all_policies: ['0|default|default.allow|allow|0'] },
  ratio: 0.5,
  n: i,
});

async function otlpSink(): Promise<NetworkSink> {
  return new NetworkSink({
    name: 'otlp',
    transport: new OtlpTransport({ endpoint: rx.url }),
    spool: await Spool.open({ directory: null }),
    node: 'node-a',
    maxBatchLines: 50,
    window: 1,
    retry: { minBackoffMs: 10, maxBackoffMs: 2000, timeoutMs: 2000 },
  });
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('the endpoint gets /v1/logs when it has no path', () => {
  assert.equal(otlpUrl('http://collector:4318').href, 'http://collector:4318/v1/logs');
  assert.equal(otlpUrl('https://c:443/custom/logs').href, 'https://c/custom/logs');
});

test('one log record per flow record, attributes named for the fields, time = end_time', async () => {
  rx = new OtlpReceiver();
  await rx.listen();
  const s = await otlpSink();
  s.level = 2;
  s.write(LineBatch.fromLines(Array.from({ length: 120 }, (_, i) => JSON.stringify(flow(i)))));
  await s.delivered();
  assert.equal(rx.requests.length, 3);
  assert.deepEqual(rx.paths, ['/v1/logs', '/v1/logs', '/v1/logs']);
  assert.ok(rx.contentTypes.every((c) => c === 'application/x-protobuf'));
  const recs = rx.records();
  assert.equal(recs.length, 120);
  for (const [i, r] of recs.entries()) {
    const { nat_outgoing_ports: _null, ...rest } = flow(i);
    assert.deepEqual(r.attrs, rest); // nulls carry no value: left out
    assert.equal(r.record.timeUnixNano, String(BigInt(1_700_000_300 + i) * 1_000_000_000n));
    assert.equal(r.record.severityText, 'INFO');
    assert.equal(r.record.eventName, 'calico.flow_log');
  }
  // Typed values, not strings: ints, doubles, arrays, key/value lists.
  const kv = rx.requests[0]!.resourceLogs[0]!.scopeLogs[0]!.logRecords[1]!.attributes;
  const byKey = Object.fromEntries(kv.map((a) => [a.key, a.value]));
  assert.deepEqual(byKey.bytes_in, { intValue: '1234' });
  assert.deepEqual(byKey.ratio, { doubleValue: 0.5 });
  assert.ok(byKey.policies?.kvlistValue !== undefined);
  assert.deepEqual(
    recs.map((r) => [
      r.resource['host.name'],
      r.resource['flowlogd.batch_seq'],
      r.resource['flowlogd.aggregation_level'],
    ]),
    [
      ...Array(50).fill(['node-a', 0, 2]),
      ...Array(50).fill(['node-a', 1, 2]),
      ...Array(20).fill(['node-a', 2, 2]),
    ],
  );
  assert.equal(recs[0]!.resource['service.name'], 'flowlogd');
  await s.close();
});

test('partial_success: rejected records are counted as dropped, not retried', async () => {
  rx = new OtlpReceiver();
  await rx.listen();
  rx.replies = [{ status: 200, rejected: 3, message: 'bad attribute' }];
  const s = await otlpSink();
  s.write(LineBatch.fromLines(Array.from({ length: 10 }, (_, i) => JSON.stringify(flow(i)))));
  await s.delivered();
  const st = s.shipStats();
  assert.deepEqual(st.dropped, { rejected: 3 });
  assert.equal(st.ackedLines, 7);
  assert.equal(st.retries, 0);
  assert.equal(rx.requests.length, 1);
  await s.close();
});

test('429, 502, 503, 504 are retried (after Retry-After), other statuses refuse the batch', async () => {
  rx = new OtlpReceiver();
  await rx.listen();
  rx.replies = [
    { status: 503, retryAfter: '1' },
    { status: 429 },
    { status: 502 },
    { status: 504 },
    { status: 200 },
    { status: 400 },
  ];
  const s = await otlpSink();
  const t0 = Date.now();
  s.write(LineBatch.fromLines(Array.from({ length: 60 }, (_, i) => JSON.stringify(flow(i)))));
  await until(() => s.stats().queuedLines === 0);
  const st = s.shipStats();
  assert.ok(Date.now() - t0 >= 1000, 'waited for Retry-After: 1');
  assert.equal(st.retries, 4);
  assert.deepEqual(s.stats().errors, { 'http 503': 1, 'http 429': 1, 'http 502': 1, 'http 504': 1 });
  assert.equal(st.ackedLines, 50);
  assert.deepEqual(st.dropped, { fatal: 10 });
  assert.equal(rx.records().length, 50);
  await s.close();
});
