// A restart loses nothing and counts nothing twice (issue 14 item 10): flowlogd with its
// maps pinned in a bpffs and a drain journal in a state directory, SIGKILLed between two
// drains (nothing flushed yet) and again right after a flush, then run to the end. The
// records of the three runs add up to conntrack's counts for every connection exactly,
// and each connection is started and completed once over the three. Then a restart
// whose map size differs from the pinned maps': they are made anew, the log says why.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Flowlogd, type Rec, until } from '../../src/lab/flowlogd.ts';
import { conntrackEntries, type Lab } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const CONNS = 3;
const PORT = 7373;

describe('restart with pinned maps and a drain journal', { skip }, () => {
  let lab!: Lab;
  const daemons: Flowlogd[] = [];
  // One bpffs instance of our own (FACTS: `ip netns exec` remounts /sys), reachable from
  // the daemons' mount namespace, as a DaemonSet's hostPath /sys/fs/bpf is.
  const pins = mkdtempSync(join(tmpdir(), 'flowlogd-pins-'));
  const state = mkdtempSync(join(tmpdir(), 'flowlogd-state-'));
  suiteLab(
    (l) => {
      lab = l;
      execFileSync('mount', ['-t', 'bpf', 'bpf', pins]);
    },
    async () => {
      for (const d of daemons) {
        await d.stop();
        rmSync(d.dir, { recursive: true, force: true });
      }
      execFileSync('umount', [pins]);
      rmSync(pins, { recursive: true, force: true });
      rmSync(state, { recursive: true, force: true });
    },
  );

  async function run(client: string, flushInterval: string, extra: Record<string, string | number> = {}) {
    const d = new Flowlogd(
      cli(null, {
        interfaces: client,
        flowLogsFlushInterval: flushInterval,
        flowLogsFileAggregationKindForAllowed: 0,
        bpfPinDirectory: pins,
        stateDirectory: state,
        ...extra,
      }),
    );
    daemons.push(d);
    await d.started;
    return d;
  }

  test('SIGKILL between drains and right after a flush: every connection exact over three runs, started and completed once', async () => {
    const client = lab.addPod({ namespace: 'default', name: `${lab.prefix}-pc` });
    const server = lab.addPod({ namespace: 'default', name: `${lab.prefix}-ps` });
    await lab.serve(server, PORT);
    // A long interval: nothing of the first run is flushed, all of it is drained.
    const first = await run(client.hostIf, '60s');
    const { child } = await lab.traffic(
      client,
      cli('tcp', { host: server.ipv4, port: PORT, conns: CONNS, send: 300_000, recv: 2000, hold: true }),
      { keep: true },
    );
    await new Promise((r) => setTimeout(r, 2500)); // two drains: the counts are in JavaScript
    await killed(first);
    assert.equal(first.records().length, 0, 'the first run flushed nothing');

    // The second replays what the first drained; killed as soon as its flush is written.
    const second = await run(client.hostIf, '2s');
    const at = second.flushes;
    await until('a flush of the second run', () => second.flushes > at);
    await killed(second);

    const third = await run(client.hostIf, '2s');
    child.stdin!.write('go\n');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    const now = third.flushes;
    await until('two flushes after the connections closed', () => third.flushes >= now + 2);
    assert.equal(await third.stop(), 0);

    const mine = (rs: Rec[]) =>
      rs.filter((r) => r.proto === 'tcp' && r.source_ip === client.ipv4 && r.dest_port === PORT);
    const all = [first, second, third].flatMap((d) => mine(d.records()));
    const truth = conntrackEntries().filter(
      (e) => e.proto === 'tcp' && e.src === client.ipv4 && e.dport === PORT,
    );
    assert.equal(truth.length, CONNS);
    for (const e of truth) {
      const rs = all.filter((r) => r.source_port === e.sport);
      const sum = (f: keyof Rec) => rs.reduce((s, r) => s + (r[f] as number), 0);
      assert.deepEqual(
        {
          packetsOut: sum('packets_out'),
          bytesOut: sum('bytes_out'),
          packetsIn: sum('packets_in'),
          bytesIn: sum('bytes_in'),
          started: sum('num_flows_started'),
          completed: sum('num_flows_completed'),
        },
        {
          packetsOut: e.origPackets,
          bytesOut: e.origBytes,
          packetsIn: e.replyPackets,
          bytesIn: e.replyBytes,
          started: 1,
          completed: 1,
        },
        `connection from port ${e.sport}: the three runs' records against conntrack`,
      );
    }
    assert.ok(mine(second.records()).length > 0, "the second run flushed the first run's counts");
    assert.match(second.stderr, /replayed the drain journal of the previous run/);
    assert.match(third.stderr, /adopted the pinned maps/);
  });

  test('pinned maps of another size are made anew, and the log names the path and why', async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-pm` });
    const d = await run(pod.hostIf, '2s', { flowMapSize: 2048 });
    assert.equal(await d.stop(), 0);
    assert.match(
      d.stderr,
      new RegExp(
        `made new maps instead of the pinned ones in ${pins}: ${pins}/flows4_0: max_entries \\d+, this build's 2048`,
      ),
    );
    // The next start with that size adopts them.
    const again = await run(pod.hostIf, '2s', { flowMapSize: 2048 });
    assert.equal(await again.stop(), 0);
    assert.match(again.stderr, /adopted the pinned maps/);
  });
});

async function killed(d: Flowlogd): Promise<void> {
  d.child.kill('SIGKILL');
  await new Promise((r) =>
    d.child.exitCode !== null || d.child.signalCode !== null ? r(null) : d.child.once('exit', r),
  );
}
