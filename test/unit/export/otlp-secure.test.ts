// OTLP/HTTP over TLS to a local HTTPS receiver (certificates made with openssl in the
// test's directory), with an authorization header, through the settings the daemon
// uses; refusals are retried under reasons naming the setting. And a restart replays
// only the batches the receiver had not acknowledged.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { NetworkSink } from '../../../src/export/network.ts';
import { OtlpTransport } from '../../../src/export/otlp.ts';
import { openShippingSinks, type ShippingOptions } from '../../../src/export/shipping.ts';
import { Spool } from '../../../src/export/spool.ts';
import { makeCerts } from '../../../src/lab/certs.ts';
import { OtlpReceiver } from './otlp-receiver.ts';
import { numbered, refused, shippingOptions, until } from './ship-helpers.ts';

let dir = '';
let rx: OtlpReceiver | null = null;
const sinks: NetworkSink[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-otlpsec-'));
});
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.close();
  await rx?.close();
  rx = null;
  rmSync(dir, { recursive: true, force: true });
});

async function otlpSink(o: Partial<ShippingOptions['otlp']>): Promise<NetworkSink> {
  const base = shippingOptions(join(dir, `spool${sinks.length}`));
  const batch = { records: 50, bytes: 1 << 20, timeoutMs: 1000 };
  const [s] = await openShippingSinks({ ...base, otlp: { ...base.otlp, endpoint: rx!.url, batch, ...o } });
  sinks.push(s!);
  return s!;
}

test('HTTPS: ships to a receiver whose certificate OtlpTlsCa trusts, with OtlpHeaders; refuses (retrying) an untrusted one and a wrong token', async () => {
  const certs = makeCerts(dir);
  rx = new OtlpReceiver({ key: readFileSync(certs.key), cert: readFileSync(certs.cert) });
  await rx.listen();
  assert.match(rx.url, /^https:/);
  rx.replyTo = (_r) => ({ status: rx!.headers.at(-1)?.authorization === 'Bearer t0k' ? 200 : 401 });
  const good = await otlpSink({ tlsCa: certs.ca, headers: 'authorization=Bearer t0k' });
  good.write(numbered(120));
  await until(() => good.shipStats().ackedLines === 120);
  assert.deepEqual(
    rx.records().map((r) => r.attrs.n),
    Array.from({ length: 120 }, (_, i) => i),
  );
  await refused(await otlpSink({ headers: 'authorization=Bearer t0k' }), /^tls .*\(OtlpTlsCa\)$/);
  await refused(
    await otlpSink({ tlsCa: makeCerts(dir, 'other').ca, headers: 'authorization=Bearer t0k' }),
    /^tls .*\(OtlpTlsCa\)$/,
  );
  await refused(
    await otlpSink({ tlsCa: certs.ca, headers: 'authorization=Bearer nope' }),
    /^http 401: .*\(OtlpHeaders\)$/,
  );
  await assert.rejects(
    otlpSink({ tlsCa: join(dir, 'missing.crt') }),
    /^Error: OtlpTlsCa=.*missing\.crt: ENOENT/,
  );
});

test('a restart replays only the batch the receiver had not acknowledged, not those acknowledged after it', async () => {
  rx = new OtlpReceiver();
  await rx.listen();
  const seqOf = (r: {
    resourceLogs: { resource: { attributes: { key: string; value: { intValue?: string } }[] } }[];
  }) =>
    Number(
      r.resourceLogs[0]!.resource.attributes.find((a) => a.key === 'flowlogd.batch_seq')!.value.intValue,
    );
  // Batch 0 is refused, slowly: the three sent beside it are acknowledged meanwhile.
  rx.replyTo = (r) => (seqOf(r) === 0 ? { status: 503, delayMs: 300 } : { status: 200 });
  const spoolDir = join(dir, 'spool');
  const sink = async () =>
    new NetworkSink({
      name: 'otlp',
      transport: new OtlpTransport({ endpoint: rx!.url }),
      spool: await Spool.open({ directory: spoolDir }),
      node: 'node-a',
      maxBatchLines: 50,
      retry: { minBackoffMs: 20, maxBackoffMs: 100, timeoutMs: 1000 },
    });
  const first = await sink();
  // Four batches in flight at once: 0 is refused (503, retried), 1-3 acknowledged.
  first.write(numbered(200));
  await until(() => first.shipStats().ackedBatches === 3 && first.shipStats().retries >= 1);
  await first.close();
  const before = rx.requests.length;
  rx.replyTo = null;
  const again = await sink();
  await until(() => again.stats().queuedLines === 0);
  assert.deepEqual(rx.requests.slice(before).map(seqOf), [0]);
  assert.deepEqual(rx.requests.map(seqOf).sort(), [0, 1, 2, 3]);
  assert.equal(again.shipStats().ackedLines, 50);
  await again.close();
});
