import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { openShippingSinks, parseHeaders, parseHostPort } from '../../../src/export/shipping.ts';
import { ForwardReceiver } from '../../../src/lab/forward-receiver.ts';
import { shippingOptions } from './ship-helpers.ts';

test('HOST:PORT and name=value headers parse, and bad ones are named', () => {
  assert.deepEqual(parseHostPort('fluentd.logging:24224'), { host: 'fluentd.logging', port: 24224 });
  assert.deepEqual(parseHostPort('[fd00::1]:24224'), { host: 'fd00::1', port: 24224 });
  assert.throws(() => parseHostPort('fluentd'), /not HOST:PORT: "fluentd"/);
  assert.throws(() => parseHostPort('h:70000'), /not HOST:PORT/);
  assert.deepEqual(parseHeaders('Authorization=Bearer a=b, x-team = net'), {
    authorization: 'Bearer a=b',
    'x-team': 'net',
  });
  assert.throws(() => parseHeaders('novalue'), /not name=value: "novalue"/);
});

const options = shippingOptions;

test('only the configured remotes get a sink, each with its own spool directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-shipping-'));
  const rx = new ForwardReceiver();
  const port = await rx.listen();
  try {
    assert.deepEqual(await openShippingSinks(options(dir)), []);
    const base = options(dir);
    const sinks = await openShippingSinks({
      ...base,
      forward: { ...base.forward, address: `127.0.0.1:${port}` },
      otlp: { ...base.otlp, endpoint: 'http://127.0.0.1:1' },
    });
    assert.deepEqual(
      sinks.map((s) => s.name),
      ['fluent-forward', 'otlp'],
    );
    assert.ok(existsSync(join(dir, 'fluent-forward', 'state.json')));
    assert.ok(existsSync(join(dir, 'otlp', 'state.json')));
    sinks[0]!.write(LineBatch.fromLines([JSON.stringify({ end_time: 1, n: 1 })]));
    await sinks[0]!.delivered();
    assert.deepEqual(rx.field('n'), [1]);
    for (const s of sinks) await s.close();
  } finally {
    await rx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file or value the sinks cannot use is reported with the setting that named it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-shipping-'));
  try {
    const base = options(dir);
    await assert.rejects(
      openShippingSinks({ ...base, otlp: { ...base.otlp, endpoint: 'http://c:4318', headers: 'novalue' } }),
      /^Error: OtlpHeaders=…: not name=value: "novalue"$/,
    );
    await assert.rejects(
      openShippingSinks({
        ...base,
        forward: { ...base.forward, address: 'f:24224', tlsCa: join(dir, 'missing.pem') },
      }),
      /^Error: FluentForwardTlsCa=.*missing\.pem: ENOENT/,
    );
    writeFileSync(join(dir, 'file'), '');
    await assert.rejects(
      openShippingSinks({
        ...base,
        spoolDirectory: join(dir, 'file'),
        nats: { ...base.nats, url: 'nats://n:4222' },
      }),
      /^Error: SpoolDirectory=.*file: cannot open .*file\/nats: .*(ENOTDIR|EEXIST)/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
