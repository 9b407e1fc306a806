// NATS JetStream against a real nats-server on loopback.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { promisify } from 'node:util';
import { DataBuffer, ProtocolHandler } from '@nats-io/nats-core/internal';
import { LineBatch } from '../../../src/export/batch.ts';
import { NatsTransport } from '../../../src/export/nats.ts';
import { DIRECT_WRITE_BYTES, installed } from '../../../src/export/nats-outbound.ts';
import { NetworkSink, type ShipStats } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import { NatsServer, natsSkip } from '../../../src/lab/nats-server.ts';

let dir = '';
let server: NatsServer;
// Every sink a test opens is closed after it, pass or fail: a sink left open keeps
// reconnecting to the killed server and holds the test process alive for ever.
const opened: NetworkSink[] = [];
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-nats-'));
  server = new NatsServer(join(dir, 'store'));
});
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await server?.kill();
  rmSync(dir, { recursive: true, force: true });
});

const line = (i: number) => JSON.stringify({ n: i, end_time: 1_700_000_000, source_ip: `10.0.0.${i & 255}` });
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const numbers = (msgs: { lines: string[] }[]) =>
  msgs.flatMap((m) => m.lines.map((l) => (JSON.parse(l) as { n: number }).n));

async function natsSink(spoolDir = join(dir, 'spool'), maxBatchLines = 100): Promise<NetworkSink> {
  const sink = new NetworkSink({
    name: 'nats',
    transport: new NatsTransport({ url: server.url, node: 'node-a', createStream: true }),
    spool: await Spool.open({ directory: spoolDir }),
    node: 'node-a',
    maxBatchLines,
    retry: { minBackoffMs: 50, maxBackoffMs: 200, timeoutMs: 2000 },
  });
  opened.push(sink);
  return sink;
}

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('records arrive complete and in order, one message per batch, with sequence and level headers', {
  skip: natsSkip,
}, async () => {
  await server.start();
  const s = await natsSink();
  s.level = 1;
  for (let i = 0; i < 2000; i += 250) s.write(LineBatch.fromLines(range(i, 250).map(line)));
  await s.flush();
  await until(() => s.stats().queuedLines === 0);
  const msgs = await server.messages('FLOWLOGS');
  assert.equal(msgs.length, 24); // 8 writes of 250 lines: 100 + 100 + 50 each
  assert.deepEqual(numbers(msgs), range(0, 2000));
  assert.deepEqual(
    msgs.map((m) => Number(m.headers['Flowlogd-Seq'])),
    range(0, 24),
  );
  assert.ok(msgs.every((m) => m.headers['Flowlogd-Aggregation-Level'] === '1'));
  assert.ok(msgs.every((m) => m.headers['Flowlogd-Node'] === 'node-a'));
  const bootId = msgs[0]!.headers['Flowlogd-Boot-Id'];
  assert.equal(msgs[3]!.headers['Nats-Msg-Id'], `node-a:${bootId}:3`);
  assert.equal(msgs[0]!.lines[0], line(0)); // the very bytes flows.log gets
  assert.equal(s.shipStats().ackedLines, 2000);
  await s.close();
});

test('large messages reach the server byte for byte, written as their parts, never joined into one copy', {
  skip: natsSkip,
}, async (t) => {
  assert.equal((ProtocolHandler.prototype as unknown as { flushPending: unknown }).flushPending, installed);
  // The transport's nats-core is the one patched (a second copy would escape the patch).
  const fromTransport = createRequire(createRequire(import.meta.url).resolve('@nats-io/transport-node'));
  assert.equal(
    fromTransport.resolve('@nats-io/nats-core/internal'),
    createRequire(import.meta.url).resolve('@nats-io/nats-core/internal'),
  );
  // Every join the client makes of queued bytes, by size: the client's pack() allocates
  // and copies a buffer that big. Ours must leave large publishes unjoined.
  const joins: number[] = [];
  const pack = DataBuffer.prototype.pack;
  t.mock.method(DataBuffer.prototype, 'pack', function (this: DataBuffer) {
    if (this.buffers.length > 1) joins.push(this.byteLength);
    return pack.call(this);
  });
  await server.start();
  const s = await natsSink(join(dir, 'spool'), 400);
  // ~1 KB lines with bytes of every kind a record may hold, 400 a batch: ~410 KB messages.
  const big = (i: number) =>
    JSON.stringify({ n: i, pad: `${'x'.repeat(900 + (i % 97))}é"\\\t${String.fromCharCode(i % 128)}` });
  const want = range(0, 2000).map(big);
  for (let i = 0; i < 2000; i += 500) s.write(LineBatch.fromLines(want.slice(i, i + 500)));
  await s.flush();
  await until(() => s.stats().queuedLines === 0);
  const msgs = await server.messages('FLOWLOGS');
  assert.equal(msgs.length, 8); // 4 writes of 500 lines: 400 + 100 each
  assert.deepEqual(
    msgs.flatMap((m) => m.lines),
    want,
  );
  assert.equal(s.shipStats().ackedLines, 2000);
  assert.deepEqual(
    joins.filter((n) => n >= DIRECT_WRITE_BYTES),
    [],
  );
  await s.close();
});

test('the server killed mid-stream and restarted: every record is in the stream exactly once', {
  skip: natsSkip,
}, async () => {
  await server.start();
  const s = await natsSink();
  let written = 0;
  const writer = (async () => {
    for (; written < 6000; written += 100) {
      s.write(LineBatch.fromLines(range(written, 100).map(line)));
      await s.flush();
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  await until(() => s.shipStats().ackedLines >= 1000);
  await server.kill();
  await until(() => s.shipStats().retries >= 2);
  const retriesWhileDown = s.shipStats().retries;
  await new Promise((r) => setTimeout(r, 300));
  await server.start();
  await writer;
  await until(() => s.stats().queuedLines === 0, 30_000);
  const st: ShipStats = s.shipStats();
  assert.ok(retriesWhileDown >= 2);
  assert.equal(st.ackedLines, 6000);
  assert.deepEqual(st.dropped, {});
  const got = numbers(await server.messages('FLOWLOGS'));
  assert.equal(got.length, 6000);
  assert.deepEqual(
    [...got].sort((a, b) => a - b),
    range(0, 6000),
  );
  await s.close();
});

test('flowlogd killed with unacknowledged data and started again: the spool replays it, the duplicate window absorbs what was stored', {
  skip: natsSkip,
}, async () => {
  await server.start();
  const child = join(import.meta.dirname, 'ship-child.ts');
  const spoolDir = join(dir, 'spool');
  // First run: 1000 lines in 10 batches, killed right after the 3rd acknowledgement,
  // before its spool could record any of them.
  const first = await promisify(execFile)(process.execPath, [child, server.url, spoolDir, '1000', '3']).catch(
    (e: { signal?: string }) => e,
  );
  assert.equal((first as { signal?: string }).signal, 'SIGKILL');
  const stored = numbers(await server.messages('FLOWLOGS'));
  assert.deepEqual(stored, range(0, 300));
  // Second run: nothing new; it replays the spool.
  const { stdout } = await promisify(execFile)(process.execPath, [child, server.url, spoolDir, '0', '0']);
  const st = JSON.parse(stdout) as ShipStats;
  assert.equal(st.spool.recoveredLines, 1000);
  assert.equal(st.ackedLines, 1000);
  assert.equal(st.duplicates, 3); // the three batches stored before the kill
  const got = numbers(await server.messages('FLOWLOGS'));
  assert.deepEqual(got, range(0, 1000));
});
