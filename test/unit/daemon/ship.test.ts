// The daemon with a network sink: dynamic aggregation raises the kinds while the sink
// is throttled on purpose (its backlog grows) and lowers them once it drains, and the
// level in force reaches the shipped batches, a metric and the log.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, mock, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../../src/daemon/config.ts';
import { Daemon } from '../../../src/daemon/daemon.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import { ok, type SendResult, type ShipBatch, type Transport } from '../../../src/export/transport.ts';
import { T0, upd } from '../aggregate/helpers.ts';
import { type MemoryDatapath, MemorySink, memoryDatapath } from './fakes.ts';

/** Holds every send until released; records the level of each batch it acknowledges. */
class Throttled implements Transport {
  readonly levels: number[] = [];
  #held: (() => void)[] = [];
  open = false;
  async send(b: ShipBatch): Promise<SendResult> {
    if (!this.open) await new Promise<void>((res) => this.#held.push(res));
    this.levels.push(b.level);
    return ok;
  }
  release(): void {
    this.open = true;
    for (const r of this.#held.splice(0)) r();
  }
  async close(): Promise<void> {}
}

let logs: Record<string, unknown>[] = [];
const logger = () =>
  pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(JSON.parse(chunk.toString()));
        cb();
      },
    }),
  );
async function advance(ms: number): Promise<void> {
  mock.timers.tick(ms);
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

beforeEach(() => {
  logs = [];
  mock.timers.enable({ apis: ['setInterval', 'setTimeout', 'Date'], now: T0 });
});
afterEach(() => mock.timers.reset());

test('a sink throttled on purpose raises the aggregation kind; released, it falls', async () => {
  const config = loadConfig({
    argv: [
      '--flow-logs-file-enabled=false',
      '--node-name',
      'node1',
      '--interfaces',
      'cali*',
      '--flow-logs-flush-interval',
      '10s',
      '--flow-logs-file-aggregation-kind-for-allowed',
      '0',
      '--flow-logs-dynamic-aggregation-enabled',
      '--flow-logs-aggregation-threshold-bytes',
      '4000',
    ],
    env: {},
  });
  const t = new Throttled();
  const net = new NetworkSink({
    name: 'slow',
    transport: t,
    spool: await Spool.open({ directory: null }),
    node: 'node1',
    retry: { timeoutMs: 3_600_000 },
  });
  const file = new MemorySink();
  const factory = memoryDatapath();
  const d = await Daemon.start({ config, logger: logger(), datapath: factory, sinks: [file, net] });
  const dp = factory.made[0] as MemoryDatapath;
  // Ten connections from one client, each from its own source port: ten records at kind
  // 0, one once the source port is aggregated away (kind 1 and up).
  const interval = (n: number) => {
    for (let i = 0; i < 10; i++)
      dp.count(
        upd({
          srcIp: '192.0.2.1',
          dstIp: '192.0.2.2',
          srcPort: 40000 + i,
          origPackets: 1,
          origBytes: 100,
          firstSeenMs: T0 + n * 10_000 + 1,
          lastSeenMs: T0 + n * 10_000 + 1,
        }),
      );
  };
  const perFlush: number[] = [];
  let seen = 0;
  for (let n = 0; n < 2; n++) {
    interval(n);
    await advance(10_000);
    perFlush.push(file.lines.length - seen);
    seen = file.lines.length;
  }
  const backlog = net.shipStats().spool.backlogBytes;
  const level = Math.min(3, Math.floor(file.lines.slice(0, 10).reduce((a, l) => a + l.length + 1, 0) / 4000));
  assert.ok(level >= 1, `ten kind-0 lines are at least 4000 bytes (${backlog} spooled)`);
  // Flush 1 at kind 0 (no backlog yet); flush 2 sees its lines unacknowledged: raised.
  assert.deepEqual(perFlush, [10, 1]);
  assert.equal(file.records()[10]!.source_port, null);
  const raised = logs.filter(
    (l) => l.msg === 'shipping backlog: aggregation raised (fewer records, same traffic)',
  );
  assert.equal(raised.length, 1);
  assert.equal(raised[0]!.level, level);
  assert.equal(raised[0]!.kindForAllowed, level);
  assert.match(await d.metricsText(), new RegExp(`^flowlogd_aggregation_level ${level}$`, 'm'));
  // Released: the backlog drains, the next flush is back at kind 0.
  t.release();
  await advance(0);
  assert.equal(net.stats().queuedLines, 0);
  interval(2);
  await advance(10_000);
  assert.equal(file.lines.length - seen, 10);
  assert.equal(logs.filter((l) => l.msg === 'shipping backlog drained: aggregation lowered').length, 1);
  // Batches carry the level in force when they were built.
  assert.deepEqual(t.levels, [0, level, 0]);
  await d.stop();
});

test('from the settings alone: the daemon opens a Fluent Forward sink with its spool and ships each flush', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { ForwardReceiver } = await import('../../../src/lab/forward-receiver.ts');
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-daemon-ship-'));
  const rx = new ForwardReceiver();
  const port = await rx.listen();
  try {
    const config = loadConfig({
      argv: ['--flow-logs-file-enabled=false', '--node-name', 'node1', '--interfaces', 'cali*'],
      env: {
        FELIX_FLOWLOGSFLUSHINTERVAL: '10',
        FLOWLOGD_FLUENT_FORWARD_ADDRESS: `127.0.0.1:${port}`,
        FLOWLOGD_SPOOL_DIRECTORY: dir,
      },
    });
    const factory = memoryDatapath();
    const d = await Daemon.start({ config, logger: logger(), datapath: factory });
    const dp = factory.made[0] as MemoryDatapath;
    dp.count(upd({ srcIp: '192.0.2.1', dstIp: '192.0.2.2', origPackets: 2, origBytes: 200 }));
    dp.count(upd({ srcIp: '192.0.2.3', dstIp: '192.0.2.2', origPackets: 1, origBytes: 60 }));
    await advance(10_000);
    // Real sockets under fake timers: let I/O run until the receiver has the record.
    for (let i = 0; i < 20_000 && rx.events.length < 1; i++) await new Promise((r) => setImmediate(r));
    // Both connections in one record at the default kind 2 (same unknown peers).
    assert.deepEqual(
      rx.events.map((e) => [e.tag, e.record.bytes_in, e.record.num_flows, e.record.host]),
      [['flows', 260, 2, 'node1']],
    );
    const acked = /^flowlogd_ship\{sink="fluent-forward",counter="acknowledgedLines"\} 1$/m;
    let text = '';
    for (let i = 0; i < 2000 && !acked.test(text); i++) {
      await new Promise((r) => setImmediate(r));
      text = await d.metricsText();
    }
    assert.match(text, acked);
    await d.stop();
  } finally {
    await rx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
