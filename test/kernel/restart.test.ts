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

  test('SIGKILL mid-interval, restart: each connection started once over both runs, completed once', async () => {
    const client = lab.addPod({ namespace: 'default', name: `${lab.prefix}-rc` });
    const server = lab.addPod({ namespace: 'default', name: `${lab.prefix}-rs` });
    await lab.serve(server, 7171);
    const args = cli(null, {
      interfaces: client.hostIf,
      flowLogsFlushInterval: '2s',
      flowLogsFileAggregationKindForAllowed: 0,
    });
    const first = new Flowlogd(args);
    daemons.push(first);
    await first.started;
    const { child } = await lab.traffic(
      client,
      cli('tcp', { host: server.ipv4, port: 7171, conns: CONNS, send: 200_000, recv: 1000, hold: true }),
      { keep: true },
    );
    const at = first.flushes;
    await until('a flush with the first halves', () => first.flushes >= at + 2);
    first.child.kill('SIGKILL');
    await new Promise((r) =>
      first.child.exitCode !== null || first.child.signalCode !== null
        ? r(null)
        : first.child.once('exit', r),
    );

    const second = new Flowlogd(args);
    daemons.push(second);
    await second.started;
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
});
