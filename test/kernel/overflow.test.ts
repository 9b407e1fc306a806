// A kernel flow map too small for the traffic (issue 14 item 5): connections that find no
// room are counted in their interface's overflow record, so the flow logs' sums still
// equal what was sent, and the overflow record carries exactly what the flows lack.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Flowlogd, until } from '../../src/lab/flowlogd.ts';
import { type Lab, run } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const MAP_ENTRIES = 1024; // the smallest map the setting allows
const FLOWS = 3000;
const IP_BYTES = 20 + 8 + 8; // IPv4 + UDP headers + spray's 8-byte payload

describe('kernel flow map full', { skip }, () => {
  let lab!: Lab;
  let daemon: Flowlogd | undefined;
  let sink = '';
  suiteLab(
    (l) => {
      lab = l;
    },
    async () => {
      await daemon?.stop();
      if (daemon) rmSync(daemon.dir, { recursive: true, force: true });
      if (sink) run('ip', ['route', 'del', 'blackhole', `${sink}/32`]);
    },
  );

  test(`${FLOWS} new UDP flows into a ${MAP_ENTRIES}-entry map: records sum to what was sent, the overflow record has the rest`, async () => {
    const client = lab.addPod({ namespace: 'default', name: `${lab.prefix}-flood` });
    // Nothing answers: every packet is one the client sent, counted at its veth's ingress.
    sink = `${lab.subnet4}.250`;
    run('ip', ['route', 'add', 'blackhole', `${sink}/32`]);
    daemon = new Flowlogd(
      cli(null, {
        interfaces: client.hostIf,
        flowMapSize: MAP_ENTRIES,
        flowLogsFlushInterval: '2s',
        flowLogsFileAggregationKindForAllowed: 0,
        conntrack: false,
        dropTracing: false,
      }),
    );
    await daemon.started;
    await until('first flush', () => daemon!.flushes >= 1);
    const { child } = await lab.traffic(
      client,
      cli('spray', { host: sink, port: 20000, flows: FLOWS, every: 3600 }),
      { keep: true },
    );
    // One round sent (its line comes once the kernel has taken all of it; the next would
    // come in an hour): stop it.
    child.kill();
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r),
    );
    const now = daemon.flushes;
    await until('two more flushes', () => daemon!.flushes >= now + 2);
    assert.equal(await daemon.stop(), 0);

    const udp = daemon.records().filter((r) => r.proto === 'udp');
    const overflow = udp.filter((r) => r.dest_name_aggr === 'overflow');
    const flows = udp.filter((r) => r.dest_name_aggr !== 'overflow');
    const sum = (rs: typeof udp, f: 'packets_out' | 'bytes_out' | 'packets_in') =>
      rs.reduce((s, r) => s + r[f], 0);
    assert.deepEqual(
      [sum(udp, 'packets_out'), sum(udp, 'bytes_out'), sum(udp, 'packets_in')],
      [FLOWS, FLOWS * IP_BYTES, 0],
      'every packet sent is in a record',
    );
    assert.ok(overflow.length >= 1, 'an overflow record');
    const lost = sum(overflow, 'packets_out');
    // The map held at most MAP_ENTRIES connections a generation: the rest overflowed.
    assert.ok(lost >= FLOWS - 2 * MAP_ENTRIES, `overflow packets ${lost}`);
    // An open UDP flow is written again, zero-byte, at each later flush: count those with packets.
    const counted = flows.filter((r) => r.packets_out > 0);
    assert.equal(counted.length, FLOWS - lost, 'one record with packets per connection that had an entry');
    assert.ok(counted.every((r) => r.packets_out === 1 && r.num_flows === 1));
    for (const r of overflow) {
      assert.deepEqual(
        [r.source_ip, r.source_type, r.dest_type, r.dest_ip, r.dest_port, r.reporter, r.num_flows],
        [client.ipv4, 'net', 'net', null, null, 'src', 0],
      );
      assert.equal(r.bytes_out, r.packets_out * IP_BYTES);
    }
  });
});
