// Fluent Forward: the test receiver is first checked against a third-party client
// (Debian's python3-fluent-logger), then flowlogd against the receiver; the entries
// flowlogd sends are also decoded by an independent msgpack implementation
// (Debian's python3-msgpack).

import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { promisify } from 'node:util';
import { Packr } from 'msgpackr';
import { LineBatch } from '../../../src/export/batch.ts';
import { FORWARD_AUTH_REFUSED, ForwardTransport, messageHead } from '../../../src/export/forward.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import { ForwardReceiver } from '../../../src/lab/forward-receiver.ts';

const PY = '/usr/bin/python3';
const havePy = spawnSync(PY, ['-c', 'import fluent.sender, msgpack']).status === 0;
const pySkip = havePy
  ? false
  : 'python3-fluent-logger / python3-msgpack not installed (scripts/setup.sh installs them)';

let dir = '';
let rx: ForwardReceiver;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-fwd-'));
});
afterEach(async () => {
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Calico-like flow log lines: end_time and a few nested fields. */
function flowLines(n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      start_time: 1_700_000_000 + from + i,
      end_time: 1_700_000_300 + from + i,
      source_ip: `10.0.${(from + i) >> 8}.${(from + i) & 255}`,
      source_labels: { labels: ['app=a', `n=${from + i}`] },
      dest_port: 53,
      nat_outgoing_ports: null,
      bytes_in: (from + i) * 7,
      n: from + i,
    }),
  );
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Debian's fluent-logger 0.10 sends Message mode without the chunk option (it does not
// ask for acks), so the receiver's ack path is checked against flowlogd only.
test('the receiver decodes a third-party client (python3-fluent-logger): Message mode, integer time and EventTime', {
  skip: pySkip,
}, async () => {
  rx = new ForwardReceiver();
  const port = await rx.listen();
  const script = `
from fluent import sender
s = sender.FluentSender('app', host='127.0.0.1', port=${port})
for i in range(5):
    assert s.emit_with_time('x', 1700000000 + i, {'i': i, 'name': 'n%d' % i}), s.last_error
ns = sender.FluentSender('app', host='127.0.0.1', port=${port}, nanosecond_precision=True)
assert ns.emit_with_time('y', 1700000009.5, {'i': 9}), ns.last_error
s.close(); ns.close()
`;
  // Asynchronously: the receiver runs in this process.
  await promisify(execFile)(PY, ['-c', script], { timeout: 20_000 });
  await until(() => rx.events.length >= 6);
  assert.deepEqual(
    rx.events.map((e) => [e.tag, e.time, e.record]),
    [
      ...[0, 1, 2, 3, 4].map((i) => ['app.x', 1_700_000_000 + i, { i, name: `n${i}` }]),
      ['app.y', { eventTime: 1_700_000_009.5 }, { i: 9 }],
    ],
  );
  assert.equal(rx.acks, 0);
  assert.ok(rx.messages.every((m) => m.mode === 'Message' && m.chunk === undefined));
});

function sink(
  port: number,
  extra: Partial<ConstructorParameters<typeof ForwardTransport>[0]> = {},
  spool?: Spool,
) {
  return (async () =>
    new NetworkSink({
      name: 'fluent-forward',
      transport: new ForwardTransport({ host: '127.0.0.1', port, selfHostname: 'node-a', ...extra }),
      spool: spool ?? (await Spool.open({ directory: dir })),
      node: 'node-a',
      maxBatchLines: 100,
      retry: { minBackoffMs: 20, maxBackoffMs: 100, timeoutMs: 500 },
    }))();
}

test('flowlogd sends PackedForward entries, one per line, in order, tag flows, time = end_time, and waits for acks', async () => {
  rx = new ForwardReceiver();
  const port = await rx.listen();
  const s = await sink(port);
  const lines = flowLines(450);
  s.write(LineBatch.fromLines(lines));
  await s.delivered();
  assert.equal(rx.events.length, 450);
  assert.deepEqual(
    rx.events.map((e) => e.record),
    lines.map((l) => JSON.parse(l)),
  );
  assert.ok(rx.events.every((e) => e.tag === 'flows'));
  assert.deepEqual(
    rx.events.map((e) => e.time),
    lines.map((l) => (JSON.parse(l) as { end_time: number }).end_time),
  );
  assert.deepEqual(
    rx.messages.map((m) => [m.mode, m.size]),
    [
      ['PackedForward', 100],
      ['PackedForward', 100],
      ['PackedForward', 100],
      ['PackedForward', 100],
      ['PackedForward', 50],
    ],
  );
  assert.equal(new Set(rx.messages.map((m) => m.chunk)).size, 5);
  // The batch sequence and level ride in the option map (Fluentd ignores unknown keys).
  assert.deepEqual(
    rx.messages.map((m) => [m.option?.flowlogd_seq, m.option?.flowlogd_level, m.option?.flowlogd_node]),
    [0, 1, 2, 3, 4].map((i) => [i, 0, 'node-a']),
  );
  assert.equal(s.shipStats().ackedLines, 450);
  await s.close();
});

test('a message head, the entries and the option map written apart are the bytes msgpackr packs for the whole message', () => {
  const packr = new Packr({ useRecords: false });
  const option = { size: 3, chunk: 'c2Vx' };
  for (const n of [0, 5, 255, 256, 65_535, 65_536, 1 << 20]) {
    const entries = Buffer.alloc(n, 0x5a);
    assert.ok(
      Buffer.concat([messageHead('flows', n), entries, packr.pack(option)]).equals(
        packr.pack(['flows', entries, option]),
      ),
      `entries of ${n} bytes`,
    );
  }
});

test('the entries decode with an independent msgpack decoder (python3-msgpack)', {
  skip: pySkip,
}, async () => {
  rx = new ForwardReceiver();
  const port = await rx.listen();
  const s = await sink(port, { compress: true, tag: 'calico.flowlogs' });
  const lines = flowLines(120);
  s.write(LineBatch.fromLines(lines));
  await s.delivered();
  await s.close();
  assert.deepEqual(
    rx.messages.map((m) => m.mode),
    ['CompressedPackedForward', 'CompressedPackedForward'],
  );
  const raw = join(dir, 'entries.bin');
  writeFileSync(raw, Buffer.concat(rx.messages.map((m) => m.entries!)));
  const out = execFileSync(PY, [
    '-c',
    `import json, msgpack, sys
u = msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False)
for t, rec in u:
    assert isinstance(t, int)
    print(json.dumps([t, rec]))`,
    raw,
  ]).toString();
  const decoded = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as [number, unknown]);
  assert.deepEqual(
    decoded,
    lines.map((l) => [(JSON.parse(l) as { end_time: number }).end_time, JSON.parse(l)]),
  );
  assert.ok(rx.events.every((e) => e.tag === 'calico.flowlogs'));
});

test('shared key: the handshake lets the right key in and refuses (retrying, spooling) a wrong one', async () => {
  rx = new ForwardReceiver({ sharedKey: 'k3y', users: { fl: 'pw' } });
  const port = await rx.listen();
  const good = await sink(port, { sharedKey: 'k3y', username: 'fl', password: 'pw' });
  good.write(LineBatch.fromLines(flowLines(10)));
  await good.delivered();
  assert.equal(rx.events.length, 10);
  await good.close();

  rmSync(dir, { recursive: true, force: true });
  const bad = await sink(port, { sharedKey: 'wrong', username: 'fl', password: 'pw' });
  bad.write(LineBatch.fromLines(flowLines(10, 10)));
  await until(() => bad.shipStats().retries >= 2);
  assert.equal(rx.events.length, 10);
  assert.equal(rx.authFailures[0], 'shared key mismatch');
  assert.equal(bad.stats().queuedLines, 10);
  assert.ok((bad.stats().errors[FORWARD_AUTH_REFUSED] ?? 0) >= 2);
  await bad.close();
});

test('a receiver that never acks causes retries and spooling, not loss', async () => {
  rx = new ForwardReceiver();
  rx.ack = false;
  const port = await rx.listen();
  const s = await sink(port);
  const lines = flowLines(300);
  s.write(LineBatch.fromLines(lines));
  await until(() => s.shipStats().retries >= 3);
  assert.equal(s.shipStats().ackedLines, 0);
  assert.equal(s.stats().queuedLines, 300);
  assert.ok((s.stats().errors['ack timeout'] ?? 0) >= 1);
  // The receiver recovers: everything arrives (some batches more than once: at-least-once).
  rx.ack = true;
  await until(() => s.stats().queuedLines === 0);
  const got = new Set(rx.field('n'));
  assert.equal(got.size, 300);
  assert.equal(s.shipStats().ackedLines, 300);
  assert.equal(s.stats().droppedLines, 0);
  await s.close();
});

test('a flowlogd restart replays what the receiver had not acknowledged', async () => {
  rx = new ForwardReceiver();
  rx.ack = false;
  const port = await rx.listen();
  const first = await sink(port);
  first.write(LineBatch.fromLines(flowLines(200)));
  await until(() => first.shipStats().retries >= 1);
  await first.close();
  rx.ack = true;
  const again = await sink(port);
  await until(() => again.stats().queuedLines === 0 && again.shipStats().ackedLines === 200);
  assert.equal(new Set(rx.field('n')).size, 200);
  await again.close();
});

test('a restart replays only the batches not acknowledged, not those acknowledged after them (no replay twice)', async () => {
  rx = new ForwardReceiver();
  // Batch 0 is never acknowledged in the first run; 1-4, sent beside it, are.
  rx.ackIf = (o) => o?.flowlogd_seq !== 0;
  const port = await rx.listen();
  const first = await sink(port);
  first.write(LineBatch.fromLines(flowLines(500)));
  await until(() => first.shipStats().ackedBatches === 4 && first.shipStats().retries >= 1);
  await first.close();
  const seqs = () => rx.messages.map((m) => m.option?.flowlogd_seq as number);
  const sentBefore = seqs().length;
  rx.ackIf = null;
  const again = await sink(port);
  await until(() => again.stats().queuedLines === 0);
  // The second run sent batch 0 alone, once.
  assert.deepEqual(seqs().slice(sentBefore), [0]);
  assert.equal(again.shipStats().ackedLines, 100);
  assert.deepEqual(
    [1, 2, 3, 4].map((q) => seqs().filter((x) => x === q).length),
    [1, 1, 1, 1],
  );
  assert.equal(new Set(rx.field('n')).size, 500);
  await again.close();
});

test('TLS: flowlogd ships over TLS to a receiver with a self-signed certificate it trusts', async () => {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const { readFileSync } = await import('node:fs');
  rx = new ForwardReceiver({ tls: { key: readFileSync(key), cert: readFileSync(cert) } });
  const port = await rx.listen();
  const s = await sink(port, { tls: { ca: readFileSync(cert), servername: undefined } });
  s.write(LineBatch.fromLines(flowLines(20)));
  await s.delivered();
  assert.equal(rx.events.length, 20);
  await s.close();
  // Without the CA: retried (spooled, nothing dropped) under a reason naming the setting.
  const untrusted = await sink(
    port,
    { tls: { servername: undefined } },
    await Spool.open({ directory: join(dir, 'u') }),
  );
  untrusted.write(LineBatch.fromLines(flowLines(10)));
  await until(() => untrusted.shipStats().retries >= 2);
  assert.deepEqual(Object.keys(untrusted.stats().errors), [
    'tls DEPTH_ZERO_SELF_SIGNED_CERT: server certificate not trusted (FluentForwardTlsCa)',
  ]);
  assert.equal(untrusted.stats().queuedLines, 10);
  assert.equal(rx.events.length, 20);
  await untrusted.close();
});
