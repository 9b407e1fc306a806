// What the drain journal costs (issue 14 item 10): the same 100k active UDP flows (one
// datagram each a second) drained every second without and with a journal, in
// interleaved rounds: journal bytes a second and the process's CPU (the drain thread and
// JavaScript) a second.
//
//   node bench/journal.bench.ts [--flows 100000] [--rounds 2] [--seconds 10]
//
// The pod sprays to an address routed to a blackhole (nothing answers). Each round opens
// its own datapath (no pins: pinning adds one map update a drain), and flushes (whole
// cycles, as the daemon does, removing the journal segments a flush covers) every 5 s.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { FlowDatapath } from '../src/datapath/datapath.ts';
import { removeSegments } from '../src/datapath/journal.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';
import { cli } from '../src/lab/args.ts';
import { Lab, run } from '../src/lab/lab.ts';

const { values } = parseArgs({
  options: {
    flows: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '10' },
  },
});
const FLOWS = Number(values.flows);
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const lab = new Lab();
const sink = `${lab.subnet4}.250`;
const results: { journal: boolean; bytesPerS: number; cpuMsPerS: number; recordsPerS: number }[] = [];
try {
  const client = lab.addPod({ namespace: 'default', name: `${lab.prefix}-jnl` });
  run('ip', ['route', 'add', 'blackhole', `${sink}/32`]);
  const { child } = await lab.traffic(
    client,
    cli('spray', { host: sink, port: 20000, flows: FLOWS, every: 1 }),
    {
      keep: true,
    },
  );
  for (let round = 0; round < ROUNDS; round++)
    for (const journal of round % 2 === 0 ? [false, true] : [true, false]) {
      const dir = mkdtempSync(join(tmpdir(), 'flowlogd-jbench-'));
      const agg = new FlowAggregator({
        nodeName: 'bench',
        resolver: new EndpointResolver({
          nodeName: 'bench',
          hostEndpoints: false,
          networkSets: false,
          historyMs: 600_000,
        }),
        startTimeMs: Date.now(),
      });
      const dp = new FlowDatapath(
        { interfaces: [client.hostIf], useConntrack: false, journalDirectory: journal ? dir : '' },
        (u) => agg.observe(u),
      );
      const flush = async () => {
        const end = await dp.sync(journal);
        agg.flush(Date.now());
        dp.resume();
        if (journal && end > 0) removeSegments(dir, end);
      };
      await sleep(3000); // warm: every flow in the table
      await flush();
      const s0 = dp.stats();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let t = 0; t < SECONDS; t += 5) {
        await sleep(5000);
        await flush();
      }
      const secs = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      const s1 = dp.stats();
      results.push({
        journal,
        bytesPerS: (s1.journalBytes - s0.journalBytes) / secs,
        cpuMsPerS: (c.user + c.system) / 1000 / secs,
        recordsPerS: (s1.recordsDrained - s0.recordsDrained) / secs,
      });
      await dp.stop();
      dp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  child.kill();
} finally {
  try {
    run('ip', ['route', 'del', 'blackhole', `${sink}/32`]);
  } catch {}
  await lab.destroy();
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`### Drain journal, ${FLOWS} active UDP flows, ${ROUNDS} interleaved rounds of ${SECONDS} s\n`);
console.log('| journal | records drained/s | journal MB/s | process CPU ms/s (median) | rounds (CPU ms/s) |');
console.log('|---|---|---|---|---|');
for (const journal of [false, true]) {
  const rs = results.filter((r) => r.journal === journal);
  console.log(
    `| ${journal ? 'on' : 'off'} | ${median(rs.map((r) => r.recordsPerS)).toFixed(0)} | ${(median(rs.map((r) => r.bytesPerS)) / 1e6).toFixed(2)} | ${median(rs.map((r) => r.cpuMsPerS)).toFixed(0)} | ${rs.map((r) => r.cpuMsPerS.toFixed(0)).join(', ')} |`,
  );
}
