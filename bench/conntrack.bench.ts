// Conntrack path: how many new connections per second the listener (addon thread) and
// the TypeScript join (decode + FlowAggregator.observeConntrack) sustain without loss,
// and the CPU they cost per 1,000 new connections/s. No TC program is attached, so only
// the conntrack path is measured. Calico's NFLOG + conntrack collector is documented at
// about one core per 1,000 new connections/s.
//
//   node bench/conntrack.bench.ts [--rates 1000,5000,20000] [--seconds 5] [--rcvbuf BYTES]
//
// A lab pod sends one UDP datagram from each of many fresh source ports (one new
// conntrack entry each, confirmed in the host netns); the bench process runs the
// pipeline and measures its own CPU (user + system, all threads) over the run.
import { parseArgs } from 'node:util';
import { FlowAggregator } from '../src/aggregate/aggregator.ts';
import { FlowDatapath } from '../src/datapath/datapath.ts';
import { EndpointResolver } from '../src/enrich/resolver.ts';
import { Lab } from '../src/lab/lab.ts';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '1000,5000,10000,20000' },
    seconds: { type: 'string', default: '5' },
    rcvbuf: { type: 'string', default: String(64 << 20) },
  },
});
const rates = values.rates.split(',').map(Number);
const seconds = Number(values.seconds);

// Sender: `rate` datagrams/s, each from a new socket (a new source port), for `seconds`.
const SENDER = `
const d = require('node:dgram');
const [host, rate, secs] = process.argv.slice(1).map((x, i) => (i ? Number(x) : x));
const total = rate * secs; let sent = 0; const t0 = Date.now(); let port = 20000;
const tick = () => {
  const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * rate));
  while (sent < due) {
    const s = d.createSocket('udp4');
    const p = port; port = port >= 60000 ? 20000 : port + 1;
    s.bind(p, () => { s.send(Buffer.alloc(16), 9, host, () => s.close()); });
    sent++;
  }
  if (sent < total) setTimeout(tick, 2); else setTimeout(() => { console.log(JSON.stringify({ sent, ms: Date.now() - t0 })); }, 200);
};
tick();
`;

const lab = new Lab();
lab.enableConntrack();
lab.setHostSysctl('net.netfilter.nf_conntrack_udp_timeout', '1');
lab.setHostSysctl('net.netfilter.nf_conntrack_max', '1048576');
const client = lab.addPod({ namespace: 'bench', name: `ctb-c-${lab.prefix}` });
const server = lab.addPod({ namespace: 'bench', name: `ctb-s-${lab.prefix}` });
const resolver = new EndpointResolver({
  nodeName: 'bench',
  hostEndpoints: false,
  networkSets: false,
  historyMs: 600_000,
});
const rows: string[] = [];
try {
  for (const rate of rates) {
    const agg = new FlowAggregator({ nodeName: 'bench', resolver, startTimeMs: Date.now() });
    let fromLab = 0;
    const dp = new FlowDatapath(
      {
        interfaces: ['flowlogd-none'],
        conntrackEvents: true,
        conntrackRcvbufBytes: Number(values.rcvbuf),
      },
      () => {},
      (e) => {
        if (e.type === 1 && e.origSrc === client.ipv4) fromLab++;
        agg.observeConntrack(e);
      },
    );
    await new Promise((r) => setTimeout(r, 500)); // initial dump done
    const before = dp.stats().conntrack!;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const out = lab.exec(client, process.execPath, [
      '-e',
      SENDER,
      server.ipv4,
      String(rate),
      String(seconds),
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const after = dp.stats().conntrack!;
    const { sent, ms } = JSON.parse(out.trim().split('\n').pop()!) as { sent: number; ms: number };
    const achieved = sent / (ms / 1000);
    const cpuS = (cpu.user + cpu.system) / 1e6;
    const core = cpuS / wallS; // cores used on average
    const perK = core / (achieved / 1000);
    const listenerCore = (after.busyNs - before.busyNs) / 1e9 / wallS;
    rows.push(
      `| ${rate} | ${Math.round(achieved)} | ${fromLab} / ${sent} | ${after.overruns - before.overruns} | ` +
        `${(core * 100).toFixed(1)}% | ${(perK * 100).toFixed(2)}% | ${(listenerCore * 100).toFixed(1)}% |`,
    );
    await dp.stop();
    dp.close();
    await new Promise((r) => setTimeout(r, 2500)); // let the entries expire
  }
} finally {
  await lab.destroy();
}
console.log(
  '| target conns/s | achieved conns/s | NEW events seen / sent | overruns | CPU (flowlogd process) | CPU per 1,000 conns/s | listener thread busy |',
);
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
