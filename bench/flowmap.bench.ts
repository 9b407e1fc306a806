// The kernel flow map when it is full (issue 14 item 5): what a flood of new connections
// that no drain empties (a daemon stopped or stalled) leaves in the flow logs, and the
// kernel memory each FlowMapSize costs.
//
//   node bench/flowmap.bench.ts [--flows 160000] [--size 131072]
//
// Flood: a lab pod sends one 8-byte UDP datagram on each of --flows 5-tuples to an
// address routed to a blackhole (nothing answers), while the datapath's drain timer is
// longer than the run, as for a SIGSTOPped daemon; then one drain and one flush. Memory:
// the maps' preallocated bytes (bpftool's bytes_memlock) at several sizes.
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { FlowDatapath } from '../src/datapath/datapath.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';
import { cli } from '../src/lab/args.ts';
import { Lab, run } from '../src/lab/lab.ts';

const { values } = parseArgs({
  options: {
    flows: { type: 'string', default: '160000' },
    size: { type: 'string', default: '131072' },
  },
});
const FLOWS = Number(values.flows);
const SIZE = Number(values.size);

function mapBytes(dp: FlowDatapath): Map<string, number> {
  const prog = JSON.parse(
    execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(dp.progIds()[0])]).toString(),
  ) as {
    map_ids: number[];
  };
  const maps = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show']).toString()) as {
    id: number;
    name: string;
    bytes_memlock: number;
  }[];
  return new Map(maps.filter((m) => prog.map_ids.includes(m.id)).map((m) => [m.name, m.bytes_memlock]));
}

const lab = new Lab();
const sink = `${lab.subnet4}.250`;
try {
  const client = lab.addPod({ namespace: 'default', name: `${lab.prefix}-flood` });
  run('ip', ['route', 'add', 'blackhole', `${sink}/32`]);
  const agg = new FlowAggregator({
    nodeName: 'bench',
    resolver: new EndpointResolver({
      nodeName: 'bench',
      hostEndpoints: false,
      networkSets: false,
      historyMs: 600_000,
    }),
    startTimeMs: Date.now(),
    kindForAllowed: 0,
  });
  const dp = new FlowDatapath(
    { interfaces: [client.hostIf], maxFlows: SIZE, drainIntervalMs: 60_000, useConntrack: false },
    (u) => agg.observe(u),
  );
  const t0 = performance.now();
  const { child } = await lab.traffic(
    client,
    cli('spray', { host: sink, port: 20000, flows: FLOWS, every: 3600 }),
    {
      keep: true,
    },
  );
  // One round queued (the next would come in an hour): let the sockets send it first.
  await new Promise((r) => setTimeout(r, 3000));
  child.kill();
  const sentMs = performance.now() - t0;
  const t1 = performance.now();
  await dp.sync();
  const drainMs = performance.now() - t1;
  const recs = agg.flush(Date.now()).filter((r) => r.proto === 'udp');
  const overflow = recs.filter((r) => r.dest_name_aggr === 'overflow');
  const k = dp.stats().kernel;
  const sum = (rs: typeof recs) => rs.reduce((s, r) => s + r.packets_out, 0);
  console.log(`### Flood of ${FLOWS} new UDP flows into a ${SIZE}-entry map, no drain meanwhile\n`);
  console.log(
    '| sent | in records | of which overflow | flow records | insertE2big | lostPackets | overflowPackets | spray | drain |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${FLOWS} | ${sum(recs)} | ${sum(overflow)} | ${recs.length - overflow.length} | ${k.insertE2big} | ${k.lostPackets} | ${k.overflowPackets} | ${sentMs.toFixed(0)} ms | ${drainMs.toFixed(0)} ms |`,
  );
  await dp.stop();
  dp.close();

  console.log('\n### Kernel memory by FlowMapSize (bytes_memlock, preallocated)\n');
  console.log(
    '| FlowMapSize | flows4_0 | flows6_0 | four flow maps | per entry of the setting | overflow maps (2) |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const size of [1024, 16384, 131072, 1048576]) {
    const d = new FlowDatapath({ interfaces: [client.hostIf], maxFlows: size }, () => {});
    const b = mapBytes(d);
    const four = 2 * (b.get('flows4_0')! + b.get('flows6_0')!);
    const ovf = b.get('flow_overflow_0')! + b.get('flow_overflow_1')!;
    console.log(
      `| ${size} | ${b.get('flows4_0')} | ${b.get('flows6_0')} | ${(four / 1e6).toFixed(1)} MB | ${(four / size).toFixed(0)} B | ${(ovf / 1e3).toFixed(0)} kB |`,
    );
    await d.stop();
    d.close();
  }
} finally {
  try {
    run('ip', ['route', 'del', 'blackhole', `${sink}/32`]);
  } catch {}
  await lab.destroy();
}
