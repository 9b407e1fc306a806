// `flowlogd demo`: a small lab on this machine (two ReplicaSets, access-... -> nginx-...,
// and one pod the metadata does not know), real TCP/UDP/ICMP traffic, and four
// `flowlogd run`s at kinds 0-3 over the same traffic, shown side by side. Cleans up after.
// The lab is the one the kernel tests use (src/lab): network namespaces joined to the
// host by Calico-style cali* veths.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../lab/args.ts';
import { Cluster } from '../lab/cluster.ts';
import { Flowlogd, type Rec } from '../lab/flowlogd.ts';
import { Lab } from '../lab/lab.ts';

const KIND_NAMES = ['0: none', '1: source port', '2: pod prefix', '3: no ports'];

function side(r: Rec, p: 'source' | 'dest'): string {
  const name = r[`${p}_name`] !== '-' ? r[`${p}_name`] : r[`${p}_name_aggr`];
  const ns = r[`${p}_namespace`] !== '-' ? `${r[`${p}_namespace`]}/` : '';
  const ip = r[`${p}_ip`] ? ` ${r[`${p}_ip`]}` : '';
  const port = r[`${p}_port`] !== null ? `:${r[`${p}_port`]}` : '';
  return `${r[`${p}_type`]} ${ns}${name}${ip}${port}`;
}

export async function demo(write: (s: string) => void): Promise<void> {
  const lab = new Lab();
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-demo-'));
  const daemons: Flowlogd[] = [];
  try {
    lab.enableConntrack();
    const cluster = new Cluster(lab, 'demo-node');
    write('building the lab: 2 access pods, 2 nginx pods, 1 unknown peer...\n');
    const access = cluster.addReplicaSet('default', 'access', 'client', 2);
    const nginx = cluster.addReplicaSet('web', 'nginx', 'backend', 2);
    const stranger = cluster.addUnknown();
    const metadata = join(dir, 'cluster.yaml');
    cluster.writeMetadata(metadata);
    for (const p of nginx.pods) await lab.serve(p, 80);
    for (const kind of [0, 1, 2, 3]) {
      daemons.push(
        new Flowlogd(
          cli(null, {
            metadata,
            interfaces: 'cali*',
            nodeName: cluster.nodeName,
            flowLogsFlushInterval: '1h',
            flowLogsFileAggregationKindForAllowed: kind,
          }),
        ),
      );
    }
    await Promise.all(daemons.map((d) => d.started));
    write(
      'traffic: each access pod -> each nginx pod: 2 TCP connections, 1 UDP flow, 2 pings; unknown -> nginx: 1 TCP\n',
    );
    const servers = nginx.pods.map((p) => p.ipv4).join(',');
    await Promise.all([
      ...access.pods.map((c) =>
        lab.traffic(c, cli('tcp', { host: servers, port: 80, conns: 2, send: 1000, recv: 20000 })),
      ),
      ...access.pods.map((c) =>
        lab.traffic(c, cli('udp', { host: servers, port: 80, flows: 1, datagrams: 2, size: 100 })),
      ),
      lab.traffic(
        stranger,
        cli('tcp', { host: nginx.pods[0]!.ipv4, port: 80, conns: 1, send: 300, recv: 300 }),
      ),
    ]);
    for (const c of access.pods) for (const s of nginx.pods) lab.ping(c, s.ipv4, 2);
    for (const d of daemons) await d.stop(); // SIGTERM: each writes its final flush
    for (const [kind, d] of daemons.entries()) {
      const recs = d.records().filter((r) => r.proto !== 'icmp6');
      write(`\n=== aggregation kind ${KIND_NAMES[kind]}: ${recs.length} records ===\n`);
      write(
        `${'reporter'.padEnd(9)}${'source'.padEnd(52)}${'destination'.padEnd(52)}proto  flows  bytes in/out\n`,
      );
      const sorted = recs.sort((a, b) =>
        `${a.reporter}${side(a, 'source')}`.localeCompare(`${b.reporter}${side(b, 'source')}`),
      );
      for (const r of sorted) {
        write(
          `${String(r.reporter).padEnd(9)}${side(r, 'source').padEnd(52)}${side(r, 'dest').padEnd(52)}${String(r.proto).padEnd(7)}${String(r.num_flows).padEnd(7)}${r.bytes_in}/${r.bytes_out}\n`,
        );
      }
    }
    write('\nthe same bytes at every kind: only how many records carry them changes.\n');
  } finally {
    for (const d of daemons) {
      await d.stop();
      rmSync(d.dir, { recursive: true, force: true });
    }
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
