// The daemon without root: an in-memory datapath and sink (fakes.ts), fake timers and a
// fake clock, signals from an EventEmitter. Each test says which packets the "kernel"
// counted and when, and asserts the exact records the daemon wrote.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, mock, test } from 'node:test';
import pino from 'pino';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import { loadConfig } from '../../../src/daemon/config.ts';
import { Daemon } from '../../../src/daemon/daemon.ts';
import { SignalHandler } from '../../../src/daemon/signals.ts';
import { T0, upd } from '../aggregate/helpers.ts';
import { type MemoryDatapath, MemorySink, memoryDatapath } from './fakes.ts';

const BASE = ['--flow-logs-file-enabled=false', '--node-name', 'node1', '--interfaces', 'cali*'];
const config = (...argv: string[]) => loadConfig({ argv: [...BASE, ...argv], env: {} });

/** A TCP connection 192.0.2.1:40000 -> 192.0.2.2:80 on cali1 (TEST-NET: no host has these). */
const A = { srcIp: '192.0.2.1', dstIp: '192.0.2.2' };
const B = { srcIp: '192.0.2.3', dstIp: '192.0.2.2', srcPort: 41000 };

/** The fields these tests vary, of every record written. */
const FIELDS = [
  'start_time',
  'end_time',
  'source_ip',
  'source_port',
  'dest_port',
  'action',
  'reporter',
  'bytes_in',
  'bytes_out',
  'packets_in',
  'packets_out',
  'num_flows',
  'num_flows_started',
  'num_flows_completed',
] as const;
function written(sink: MemorySink) {
  return sink.records().map((r) => Object.fromEntries(FIELDS.map((k) => [k, r[k]])));
}
const S = (ms: number) => (T0 + ms) / 1000;

let logs: Record<string, unknown>[] = [];
const logger = () =>
  pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(JSON.parse(chunk.toString()));
        cb();
      },
    }),
  );
const logged = (msg: string) => logs.filter((l) => l.msg === msg);

/** Lets every pending promise chain run (setImmediate is not faked). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}
/** Advances the fake clock and timers by `ms`, then settles. */
async function advance(ms: number): Promise<void> {
  mock.timers.tick(ms);
  await settle();
}

async function start(argv: string[], sinks = [new MemorySink()]) {
  const factory = memoryDatapath();
  const d = await Daemon.start({ config: config(...argv), logger: logger(), datapath: factory, sinks });
  return { d, dp: factory.made[0] as MemoryDatapath, sink: sinks[0]!, factory };
}

beforeEach(() => {
  logs = [];
  mock.timers.enable({ apis: ['setInterval', 'setTimeout', 'Date'], now: T0 });
});
afterEach(() => mock.timers.reset());

test('flush: every interval drains the datapath and writes that interval’s records', async () => {
  const { d, dp, sink } = await start(['--flow-logs-flush-interval', '10s']);
  assert.deepEqual(
    [dp.options.interfaces, dp.options.drainIntervalMs, dp.options.conntrackEvents, dp.options.dropTracing],
    [['cali*'], 1000, true, true],
  );
  dp.count(upd({ ...A, origPackets: 3, origBytes: 300, replyPackets: 2, replyBytes: 200 }));
  await advance(9_999);
  assert.deepEqual([dp.syncs, sink.lines.length], [0, 0]);
  await advance(1);
  dp.count(upd({ ...A, origPackets: 1, origBytes: 100, firstSeenMs: T0 + 12_000, lastSeenMs: T0 + 12_000 }));
  await advance(10_000);
  assert.equal(dp.syncs, 2);
  const rec = { source_ip: null, source_port: null, dest_port: 80, action: 'allow', reporter: 'dst' };
  assert.deepEqual(written(sink), [
    {
      start_time: S(0),
      end_time: S(10_000),
      ...rec,
      bytes_in: 300,
      bytes_out: 200,
      packets_in: 3,
      packets_out: 2,
      num_flows: 1,
      num_flows_started: 1,
      num_flows_completed: 0,
    },
    {
      start_time: S(10_000),
      end_time: S(20_000),
      ...rec,
      bytes_in: 100,
      bytes_out: 0,
      packets_in: 1,
      packets_out: 0,
      num_flows: 1,
      num_flows_started: 0,
      num_flows_completed: 0,
    },
  ]);
  // Each flush says which interval it closed, on which timer, and what it could wait.
  assert.deepEqual(
    logged('flushed').map((l) => [l.seq, l.endMs, l.intervalMs, l.sinkWaitMs, l.records]),
    [
      [1, T0 + 10_000, 10_000, 5000, 1],
      [2, T0 + 20_000, 10_000, 5000, 1],
    ],
  );
  await d.stop();
});

test('without conntrack events or drop tracing in the kernel, the daemon says so and goes on', async () => {
  const factory = memoryDatapath(['ERR_CONNTRACK', 'ERR_DROP_TRACE']);
  const d = await Daemon.start({ config: config(), logger: logger(), datapath: factory, sinks: [] });
  assert.deepEqual(
    factory.opened.map((o) => [o.conntrackEvents, o.dropTracing]),
    [
      [true, true],
      [false, true],
      [false, false],
    ],
  );
  assert.deepEqual(
    logs.filter((l) => l.level === 40).map((l) => l.code),
    ['ERR_CONNTRACK', 'ERR_DROP_TRACE'],
  );
  await d.stop();
});

test('SIGHUP: flush interval and aggregation take effect at once, other settings at the next start', async () => {
  const { d, dp, sink } = await start(['--flow-logs-flush-interval', '10s']);
  const signals = new EventEmitter();
  let load = () =>
    config('--flow-logs-flush-interval', '5s', '--flow-logs-file-aggregation-kind-for-allowed', '0');
  const handler = new SignalHandler({ signals, log: logger(), loadConfig: () => load(), exit: () => {} });
  handler.attach(d);
  dp.count(upd({ ...A, origPackets: 2, origBytes: 120 }));
  signals.emit('SIGHUP');
  await settle();
  assert.deepEqual(logged('reloaded')[0]?.waitingForRestart, []);
  await advance(5_000); // the new interval, from the reload
  const rec = { source_ip: '192.0.2.1', source_port: 40000, dest_port: 80, action: 'allow', reporter: 'dst' };
  const none = { bytes_out: 0, packets_out: 0, num_flows: 1, num_flows_completed: 0 };
  assert.deepEqual(written(sink), [
    {
      start_time: S(0),
      end_time: S(5_000),
      ...rec,
      bytes_in: 120,
      packets_in: 2,
      ...none,
      num_flows_started: 1,
    },
  ]);

  // Settings that cannot change live are named and kept; invalid settings are refused whole.
  load = () =>
    config('--flow-logs-flush-interval', '5s', '--interfaces', 'eth*', '--flow-logs-file-max-files', '9');
  signals.emit('SIGHUP');
  await settle();
  assert.deepEqual(logged('these settings take effect at the next start')[0]?.settings, [
    'flowLogsFileMaxFiles',
    'interfaces',
  ]);
  assert.deepEqual(logged('reloaded')[1]?.waitingForRestart, ['flowLogsFileMaxFiles', 'interfaces']);
  // The flush after the first reload ran on the 5 s timer (half of it is the sink budget).
  assert.deepEqual(
    logged('flushed').map((l) => [l.seq, l.endMs, l.intervalMs, l.sinkWaitMs]),
    [[1, T0 + 5_000, 5_000, 2500]],
  );
  load = () => config('--flow-logs-flush-interval', '10ms');
  signals.emit('SIGHUP');
  await settle();
  assert.equal(logged('SIGHUP: new settings rejected; keeping the current ones').length, 1);
  // Still every 5 s, and kind 2 again (the default), as the last accepted settings say.
  await advance(5_000);
  assert.deepEqual(written(sink).slice(1), [
    {
      start_time: S(5_000),
      end_time: S(10_000),
      ...rec,
      source_ip: null,
      source_port: null,
      bytes_in: 0,
      packets_in: 0,
      ...none,
      num_flows_started: 0,
    },
  ]);
  await d.stop();
});

test('a stalled sink holds neither the flush nor the next one, nor the exit', async () => {
  const stuck = new MemorySink('stuck');
  stuck.stalled = true;
  const other = new MemorySink('other');
  const { d, dp } = await start(['--flow-logs-flush-interval', '10s'], [stuck, other]);
  const signals = new EventEmitter();
  const handler = new SignalHandler({ signals, log: logger(), loadConfig: () => config(), exit: () => {} });
  handler.attach(d);
  dp.count(upd({ ...A, origPackets: 1, origBytes: 60 }));
  await advance(10_000);
  assert.equal(logged('flushed').length, 0); // waiting for the stuck sink
  await advance(5_000);
  assert.deepEqual(
    logged('a sink is not keeping up; its bounded queue takes the rest').map((l) => l.timeoutMs),
    [5000],
  );
  assert.equal(logged('flushed').length, 1);
  dp.count(upd({ ...B, origPackets: 4, origBytes: 240, firstSeenMs: T0 + 16_000, lastSeenMs: T0 + 16_000 }));
  await advance(5_000); // T0+20s: the next flush, on time
  await advance(0); // its 0 ms wait for the still stalled sink: no time at all
  assert.equal(logged('flushed').length, 2);
  await advance(5_000);
  // The first flush gave the stalled sink its 5 s; the next, with that sink still full, none.
  assert.deepEqual(
    logged('flushed').map((l) => [l.seq, l.endMs, l.sinkWaitMs]),
    [
      [1, T0 + 10_000, 5000],
      [2, T0 + 20_000, 0],
    ],
  );
  signals.emit('SIGTERM');
  await settle();
  await advance(5_000); // the final flush does not wait for a sink still stalled
  await advance(10_000); // closing it waits 5 s, then drops (counted) what it holds
  assert.equal(await handler.exited, 0);
  assert.equal(logged('a sink did not finish writing the final flush in time').length, 1);
  const common = { source_ip: null, source_port: null, dest_port: 80, action: 'allow', reporter: 'dst' };
  const none = { bytes_out: 0, packets_out: 0 };
  // A and B share one kind-2 record; the final flush closes the interval at SIGTERM (25 s).
  const expected = [
    { start_time: S(0), end_time: S(10_000), ...common, bytes_in: 60, packets_in: 1, ...none, num_flows: 1 },
    {
      start_time: S(10_000),
      end_time: S(20_000),
      ...common,
      bytes_in: 240,
      packets_in: 4,
      ...none,
      num_flows: 2,
    },
    {
      start_time: S(20_000),
      end_time: S(25_000),
      ...common,
      bytes_in: 0,
      packets_in: 0,
      ...none,
      num_flows: 2,
    },
  ].map((r, i) => ({
    ...r,
    num_flows_started: i === 2 ? 0 : 1,
    num_flows_completed: 0,
  }));
  for (const sink of [stuck, other]) assert.deepEqual(written(sink), expected);
});

test('SIGTERM: detach, drain what was counted since the last flush into a final flush, close', async () => {
  const { d, dp, sink } = await start(['--flow-logs-flush-interval', '10s']);
  const signals = new EventEmitter();
  const exits: number[] = [];
  const handler = new SignalHandler({
    signals,
    log: logger(),
    loadConfig: () => config(),
    exit: (c) => exits.push(c),
  });
  handler.attach(d);
  dp.count(upd({ ...A, origPackets: 3, origBytes: 180 }));
  await advance(10_000);
  await advance(2_000);
  dp.count(upd({ ...B, origPackets: 5, origBytes: 500, firstSeenMs: T0 + 11_000, lastSeenMs: T0 + 11_500 }));
  signals.emit('SIGTERM');
  signals.emit('SIGTERM'); // a second one does not wait
  assert.deepEqual(exits, [130]);
  assert.equal(await handler.exited, 0);
  assert.deepEqual([dp.stopped, dp.closed, sink.closed], [true, true, true]);
  const common = { source_ip: null, source_port: null, dest_port: 80, action: 'allow', reporter: 'dst' };
  assert.deepEqual(written(sink), [
    {
      start_time: S(0),
      end_time: S(10_000),
      ...common,
      bytes_in: 180,
      bytes_out: 0,
      packets_in: 3,
      packets_out: 0,
      num_flows: 1,
      num_flows_started: 1,
      num_flows_completed: 0,
    },
    {
      start_time: S(10_000),
      end_time: S(12_000),
      ...common,
      bytes_in: 500,
      bytes_out: 0,
      packets_in: 5,
      packets_out: 0,
      num_flows: 2,
      num_flows_started: 1,
      num_flows_completed: 0,
    },
  ]);
  // Stopped: nothing is counted or flushed after the final flush.
  dp.count(upd({ ...A, origPackets: 1, origBytes: 60 }));
  await advance(60_000);
  assert.equal(sink.lines.length, 2);
  assert.equal(await d.stop().then(() => 'again'), 'again');
});

test('idle, the daemon sleeps: no key-building timer and no post-flush GC until something arrives', async () => {
  const g = globalThis as { gc?: unknown };
  const hadGc = g.gc;
  g.gc = async () => {}; // as with --expose-gc: the post-flush release runs when asked to
  const prepare = mock.method(FlowAggregator.prototype, 'prepareKeys');
  try {
    const { d, dp, factory } = await start(['--flow-logs-flush-interval', '10s']);
    await advance(0);
    assert.equal(factory.releases, 1, "the start's garbage is given back once");
    for (let i = 0; i < 3; i++) await advance(10_000); // three flushes of nothing
    assert.deepEqual([dp.syncs, prepare.mock.callCount(), factory.releases], [3, 0, 1]);
    dp.count(upd({ ...A, origPackets: 1, origBytes: 100 }));
    await advance(10_000); // the fourth flush drains it: one record, then the GC and release
    assert.equal(factory.releases, 2);
    // The update reached the aggregator at that flush's drain; its key was built then, so
    // no timer was left armed.
    await advance(1_000);
    const afterFlush = prepare.mock.callCount();
    for (let i = 0; i < 3; i++) await advance(10_000);
    assert.equal(prepare.mock.callCount(), afterFlush, 'nothing new: no more key-building runs');
    // One GC per flush that wrote something (the open connection's records carry over).
    const wrote = logged('flushed').map((l) => l.records as number);
    assert.deepEqual(wrote.slice(0, 4), [0, 0, 0, 1]);
    assert.equal(factory.releases, 1 + wrote.filter((n) => n > 0).length);
    await d.stop();
  } finally {
    prepare.mock.restore();
    g.gc = hadGc;
  }
});
