// NATS JetStream over TLS and with authentication, against a real nats-server: the
// certificates are made with openssl in the test's directory. A bad CA, user, password
// or token is retried (the batch stays spooled) under a reason naming the setting.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import type { NetworkSink } from '../../../src/export/network.ts';
import { openShippingSinks, type ShippingOptions } from '../../../src/export/shipping.ts';
import { makeCerts } from '../../../src/lab/certs.ts';
import { NatsServer, type NatsServerOptions, natsSkip } from '../../../src/lab/nats-server.ts';
import { numbered, refused, shippingOptions, until } from './ship-helpers.ts';

let dir = '';
let server: NatsServer | null = null;
const sinks: NetworkSink[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-natssec-'));
});
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.close();
  await server?.kill();
  server = null;
  rmSync(dir, { recursive: true, force: true });
});

const batch = { records: 50, bytes: 1 << 20, timeoutMs: 1000 };

/** The daemon's own path: the settings as openShippingSinks gets them. */
async function natsSink(n: Partial<ShippingOptions['nats']>): Promise<NetworkSink> {
  const o = shippingOptions(join(dir, `spool${sinks.length}`));
  const nats = { ...o.nats, url: server!.url, createStream: true, batch, ...n };
  const [s] = await openShippingSinks({ ...o, nats });
  sinks.push(s!);
  return s!;
}

async function start(o: NatsServerOptions): Promise<NatsServer> {
  server = new NatsServer(join(dir, 'store'), o);
  await server.start();
  return server;
}

/** Ships 120 records and checks the stream holds exactly them. */
async function shipsAll(s: NetworkSink): Promise<void> {
  s.write(numbered(120));
  await until(() => s.shipStats().ackedLines === 120);
  const msgs = await server!.messages('FLOWLOGS');
  assert.equal(msgs.length, 3);
  assert.deepEqual(
    msgs.flatMap((m) => m.lines.map((l) => (JSON.parse(l) as { n: number }).n)),
    Array.from({ length: 120 }, (_, i) => i),
  );
}

test('TLS: ships to a nats-server whose certificate NatsTlsCa trusts; refuses (retrying) without it or with another CA', {
  skip: natsSkip,
}, async () => {
  const certs = makeCerts(dir);
  const other = makeCerts(dir, 'other');
  await start({ tls: { ...certs } });
  await shipsAll(await natsSink({ tlsCa: certs.ca }));
  await refused(await natsSink({ tlsCa: other.ca }), /^tls .*\(NatsTlsCa\)$/);
  await refused(await natsSink({}), /^tls .*\(NatsTlsCa\)$/);
  // A CA file that cannot be read stops the start, naming the setting.
  await assert.rejects(
    natsSink({ tlsCa: join(dir, 'missing.crt') }),
    /^Error: NatsTlsCa=.*missing\.crt: ENOENT/,
  );
});

test('user and password: ships with the right ones; a wrong password is retried under a reason naming the settings', {
  skip: natsSkip,
}, async () => {
  await start({ user: { name: 'flowlogd', password: 's3cret' } });
  await shipsAll(await natsSink({ user: 'flowlogd', password: 's3cret' }));
  await refused(await natsSink({ user: 'flowlogd', password: 'wrong' }), /NatsUser\/NatsPassword/);
  await refused(await natsSink({}), /NatsUser\/NatsPassword/);
});

test('token: ships with the right token; a wrong one is retried under a reason naming NatsToken', {
  skip: natsSkip,
}, async () => {
  await start({ token: 't0ken-abc' });
  await shipsAll(await natsSink({ token: 't0ken-abc' }));
  await refused(await natsSink({ token: 'wrong' }), /NatsToken/);
});
