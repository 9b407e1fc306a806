// The drain thread sleeps while there is nothing to drain (issue 12): with no traffic it
// runs no drain cycle (no timer, no wake-up of JavaScript) until the programs insert an
// entry; the first packet wakes it, is delivered exactly, and the thread sleeps again.
// Counts, not timings: the cycles over an idle window are exactly none (the thread's
// timer made one an interval before).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import type { ConnectionUpdate } from '../../src/datapath/types.ts';
import { type Lab, type Pod, run } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const INTERVAL_MS = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (polling, no assertion on how long) until `cond` holds; fails after 10 s. */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await sleep(50);
  }
  assert.fail(`not within 10 s: ${what}`);
}

describe('idle datapath', { skip: kernelSkipReason() }, () => {
  let lab: Lab;
  let client: Pod;
  let server: Pod;
  suiteLab((l) => {
    lab = l;
    client = lab.addPod({ namespace: 'idle', name: `c-${lab.prefix}` });
    server = lab.addPod({ namespace: 'idle', name: `s-${lab.prefix}` });
    // No IPv6 on the watched veth: its neighbour discovery and router solicitations would
    // be traffic of their own. IPv4 sends nothing unasked (ARP is not IP: not counted).
    run('sysctl', ['-qw', `net.ipv6.conf.${client.hostIf}.disable_ipv6=1`]);
    lab.exec(client, 'sysctl', ['-qw', 'net.ipv6.conf.eth0.disable_ipv6=1']);
  });

  test('no traffic: no drain cycle at all; one ping wakes it, is delivered exactly, and it sleeps again', async () => {
    type Seen = Pick<ConnectionUpdate, 'proto' | 'interfaceName' | 'origPackets' | 'replyPackets'>;
    const updates: Seen[] = [];
    let cycles = 0;
    const dp = new FlowDatapath(
      { interfaces: [client.hostIf], drainIntervalMs: INTERVAL_MS, conntrackEvents: false },
      // One reused view per record: copied.
      (u) =>
        updates.push({
          proto: u.proto,
          interfaceName: u.interfaceName,
          origPackets: u.origPackets,
          replyPackets: u.replyPackets,
        }),
      () => {},
    );
    dp.on('cycle', () => cycles++);
    try {
      await until('the drain thread sleeps', () => dp.stats().drainAsleep);
      const s0 = dp.stats();
      const c0 = cycles;
      await sleep(10 * INTERVAL_MS); // ten intervals: ten drains before this change
      const s1 = dp.stats();
      assert.deepEqual(
        [s1.drainCycles - s0.drainCycles, cycles - c0, s1.drainSleeps - s0.drainSleeps, s1.drainAsleep],
        [0, 0, 0, true],
        'idle: no drain, no cycle event, still asleep',
      );
      assert.equal(updates.length, 0);

      lab.ping(client, server.ipv4, 1);
      const icmp = () => updates.filter((u) => u.proto === 1 && u.interfaceName === client.hostIf);
      await until('the ping is delivered', () => icmp().length > 0);
      await until('the drain thread sleeps again', () => {
        const s = dp.stats();
        return s.drainAsleep && s.drainSleeps > s1.drainSleeps;
      });
      const sum = (f: 'origPackets' | 'replyPackets') => icmp().reduce((n, u) => n + u[f], 0);
      assert.deepEqual([sum('origPackets'), sum('replyPackets')], [1, 1]);
      assert.ok(dp.stats().drainCycles > s1.drainCycles, 'the entry woke the thread, which drained it');
    } finally {
      await dp.stop();
      dp.close();
    }
  });
});
