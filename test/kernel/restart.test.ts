// flowlogd killed mid-interval and started again with long-lived connections open
// (issue 14 item 10): a connection open across the restart is carried in, not started
// again (it was counted started once, by the first run).
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Flowlogd, until } from '../../src/lab/flowlogd.ts';
import type { Lab } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const CONNS = 3;

describe('restart with open connections', { skip }, () => {
  let lab!: Lab;
  const daemons: Flowlogd[] = [];
  suiteLab(
    (l) => {
      lab = l;
    },
    async () => {
      for (const d of daemons) {
        await d.stop();
        rmSync(d.dir, { recursive: true, force: true });
      }
    },
  );

  /** A client and a server pod, a server on `port`, and a first run watching the client's veth. */
  async function startPair(tag: string, port: number) {
    const client = lab.addPod({ namespace: 'default', name: `${lab.prefix}-${tag}c` });
    const server = lab.addPod({ namespace: 'default', name: `${lab.prefix}-${tag}s` });
    await lab.serve(server, port);
    const args = cli(null, {
      interfaces: client.hostIf,
      flowLogsFlushInterval: '2s',
      flowLogsFileAggregationKindForAllowed: 0,
    });
    return { client, server, args, first: await started(args) };
  }

  async function started(args: string[]): Promise<Flowlogd> {
    const d = new Flowlogd(args);
    daemons.push(d);
    await d.started;
    return d;
  }

  test('SIGKILL mid-interval, restart: each connection started once over both runs, completed once', async () => {
    const { client, server, args, first } = await startPair('r', 7171);
    const { child } = await lab.traffic(
      client,
      cli('tcp', { host: server.ipv4, port: 7171, conns: CONNS, send: 200_000, recv: 1000, hold: true }),
      { keep: true },
    );
    const at = first.flushes;
    await until('a flush with the first halves', () => first.flushes >= at + 2);
    await killed(first);

    const second = await started(args);
    child.stdin!.write('go\n');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    const now = second.flushes;
    await until('flushes after the connections closed', () => second.flushes >= now + 2);
    assert.equal(await second.stop(), 0);

    const mine = (d: Flowlogd) =>
      d.records().filter((r) => r.proto === 'tcp' && r.source_ip === client.ipv4 && r.dest_port === 7171);
    const sum = (rs: ReturnType<typeof mine>, f: 'num_flows_started' | 'num_flows_completed') =>
      rs.reduce((s, r) => s + r[f], 0);
    const before = mine(first);
    const after = mine(second);
    assert.equal(new Set(after.map((r) => r.source_port)).size, CONNS, 'every connection in the second run');
    assert.deepEqual(
      [sum(before, 'num_flows_started'), sum(after, 'num_flows_started')],
      [CONNS, 0],
      'started by the first run; carried in by the second',
    );
    assert.equal(sum(after, 'num_flows_completed'), CONNS, 'completed once, in the second run');
    for (const r of after) assert.equal(r.num_flows, 1);
  });

  test('UDP and ICMP flows open across a SIGKILL and restart: started once over both runs', async () => {
    const { client, server, args, first } = await startPair('u', 7272);
    // Four UDP 5-tuples, a datagram each every 0.5 s, and one ping (one echo id), both
    // until after the second run has flushed twice.
    const { child: spray } = await lab.traffic(
      client,
      cli('spray', { host: server.ipv4, port: 7272, flows: 4, every: 0.5 }),
      { keep: true },
    );
    const ping = lab.spawn(client, 'ping', ['-q', '-n', '-i', '0.2', '-c', '60', server.ipv4]);
    const at = first.flushes;
    await until('two flushes of the first run', () => first.flushes >= at + 2);
    await killed(first);
    const second = await started(args);
    const now = second.flushes;
    await until('two flushes of the second run', () => second.flushes >= now + 2);
    spray.stdin!.write('stop\n');
    ping.kill('SIGINT');
    assert.equal(await second.stop(), 0);

    const flows = (d: Flowlogd, proto: string) =>
      d
        .records()
        .filter((r) => r.proto === proto && r.source_ip === client.ipv4 && r.dest_ip === server.ipv4);
    const startedBy = (proto: string) => {
      const by = new Map<string, number[]>();
      for (const [run, d] of [first, second].entries())
        for (const r of flows(d, proto)) {
          const k = proto === 'udp' ? String(r.source_port) : 'echo';
          const v = by.get(k) ?? [0, 0];
          v[run]! += r.num_flows_started;
          by.set(k, v);
        }
      return [...by.values()];
    };
    const udp = startedBy('udp');
    assert.equal(udp.length, 4, 'four UDP flows');
    for (const v of udp)
      assert.deepEqual(v, [1, 0], 'UDP: started by the first run, carried in by the second');
    assert.deepEqual(startedBy('icmp'), [[1, 0]], 'ICMP: started by the first run, carried in by the second');
    for (const r of [...flows(second, 'udp'), ...flows(second, 'icmp')]) assert.equal(r.num_flows, 1);
  });
});

async function killed(d: Flowlogd): Promise<void> {
  d.child.kill('SIGKILL');
  await new Promise((r) =>
    d.child.exitCode !== null || d.child.signalCode !== null ? r(null) : d.child.once('exit', r),
  );
}
