// `flowlogd run` end to end with network sinks beside flows.log: real traffic in a lab,
// the real datapath, a real nats-server and the Forward receiver. What JetStream stores
// is byte for byte what flows.log got, in order; what Forward delivers is the same
// records; each batch is numbered without a gap.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Flowlogd, until } from '../../src/lab/flowlogd.ts';
import { ForwardReceiver } from '../../src/lab/forward-receiver.ts';
import type { Lab } from '../../src/lab/lab.ts';
import { NatsServer, natsSkip } from '../../src/lab/nats-server.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason() ?? (natsSkip || undefined);

describe('flowlogd run ships to NATS JetStream and Fluent Forward what it writes to flows.log', {
  skip,
}, () => {
  let lab!: Lab;
  let dir = '';
  suiteLab(
    (l) => {
      lab = l;
      dir = mkdtempSync(join(tmpdir(), 'flowlogd-ship-e2e-'));
    },
    () => rmSync(dir, { recursive: true, force: true }),
  );

  test('kind 0, UDP flows over several flushes: the stream and the receiver hold exactly the flows.log lines', async () => {
    const nats = new NatsServer(join(dir, 'store'));
    await nats.start();
    const rx = new ForwardReceiver();
    const port = await rx.listen();
    let d: Flowlogd | null = null;
    try {
      const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-ship-c` });
      const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-ship-s` });
      await lab.serve(server, 9090);
      d = new Flowlogd(
        cli(null, {
          interfaces: client.hostIf,
          flowLogsFlushInterval: '1s',
          flowLogsFileAggregationKindForAllowed: 0,
          natsUrl: nats.url,
          natsCreateStream: true,
          fluentForwardAddress: `127.0.0.1:${port}`,
          spoolDirectory: join(dir, 'spool'),
        }),
      );
      await d.started;
      await lab.traffic(client, cli('udp', { host: server.ipv4, port: 9090, flows: 40 }));
      const f0 = d.flushes;
      await until('two more flushes', () => d!.flushes >= f0 + 2);
      assert.equal(await d.stop(), 0);
      // One flows.log (no rotation at 100 MB), its lines as written.
      const lines = readFileSync(join(d.dir, 'flows.log'), 'utf8').split('\n').slice(0, -1);
      assert.ok(lines.length >= 40, `one record per flow at kind 0 (${lines.length})`);
      const msgs = await nats.messages('FLOWLOGS');
      assert.deepEqual(
        msgs.flatMap((m) => m.lines),
        lines,
        'JetStream holds the flows.log lines, byte for byte, in order',
      );
      assert.deepEqual(
        msgs.map((m) => Number(m.headers['Flowlogd-Seq'])),
        msgs.map((_, i) => i),
        'batch sequence without a gap',
      );
      await until('Forward has every record', () => rx.events.length >= lines.length);
      assert.deepEqual(
        rx.events.map((e) => e.record),
        lines.map((l) => JSON.parse(l)),
      );
    } finally {
      await d?.stop();
      await rx.close();
      await nats.kill();
    }
  });
});
