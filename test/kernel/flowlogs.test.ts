// `flowlogd run` end to end: a lab of two ReplicaSets and an unknown peer, real TCP, UDP
// and ICMP, four daemons (kinds 0-3) side by side. Every record's key fields, null/"-"
// rules, names, labels and reporter, and per-key sums of bytes, packets and flows, equal
// what an independent model derives from conntrack's accounting and the metadata.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Cluster } from '../../src/lab/cluster.ts';
import { Flowlogd, until } from '../../src/lab/flowlogd.ts';
import { type ConntrackEntry, conntrackEntries, type Lab } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const FLUSH_S = 5;
const IDLE_S = 3;

interface Endpoint {
  type: string;
  name: string;
  aggr: string;
  ns: string;
  ip: string;
  labels: string[];
}

const KEY_FIELDS = [
  'source_type',
  'source_namespace',
  'source_name_aggr',
  'source_name',
  'source_ip',
  'source_port',
  'dest_type',
  'dest_namespace',
  'dest_name_aggr',
  'dest_name',
  'dest_ip',
  'dest_port',
  'dest_service_namespace',
  'dest_service_name',
  'dest_service_port',
  'proto',
  'action',
  'reporter',
] as const;

function keyOf(r: Record<string, unknown>): string {
  return KEY_FIELDS.map((f) => `${f}=${JSON.stringify(r[f])}`).join(' ');
}

/** What the records of one kind must add up to, from conntrack and the metadata. */
function model(kind: number, entries: ConntrackEntry[], endpointOf: (ip: string) => Endpoint) {
  const out = new Map<
    string,
    { fields: Record<string, unknown>; labels: [string[], string[]]; sums: number[] }
  >();
  for (const e of entries) {
    const client = endpointOf(e.src);
    const server = endpointOf(e.dst);
    const proto = e.proto === 'icmpv6' ? 'icmp6' : e.proto;
    const icmp = proto === 'icmp' || proto === 'icmp6';
    for (const reporter of ['src', 'dst'] as const) {
      const side = (ep: Endpoint, port: number | null, prefix: 'source' | 'dest') => ({
        [`${prefix}_type`]: ep.type,
        [`${prefix}_namespace`]: ep.ns,
        [`${prefix}_name_aggr`]: ep.type === 'net' && kind < 2 ? ep.aggr : ep.aggr,
        [`${prefix}_name`]: kind >= 2 || ep.type === 'net' ? '-' : ep.name,
        [`${prefix}_ip`]: kind >= 2 ? null : ep.ip,
        [`${prefix}_port`]: port,
      });
      const fields = {
        ...side(client, icmp || kind >= 1 ? null : e.sport, 'source'),
        ...side(server, icmp || kind >= 3 ? null : e.dport, 'dest'),
        dest_service_namespace: '-',
        dest_service_name: '-',
        dest_service_port: '-',
        proto,
        action: 'allow',
        reporter,
      };
      const k = keyOf(fields);
      const o = out.get(k) ?? { fields, labels: [client.labels, server.labels], sums: [0, 0, 0, 0, 0] };
      // reporter src: *_out is client -> server; reporter dst: *_in is.
      const [bi, bo, pi, po] =
        reporter === 'src'
          ? [e.replyBytes, e.origBytes, e.replyPackets, e.origPackets]
          : [e.origBytes, e.replyBytes, e.origPackets, e.replyPackets];
      o.sums = [o.sums[0]! + bi, o.sums[1]! + bo, o.sums[2]! + pi, o.sums[3]! + po, o.sums[4]! + 1];
      o.labels = [
        o.labels[0].filter((l) => client.labels.includes(l)),
        o.labels[1].filter((l) => server.labels.includes(l)),
      ];
      out.set(k, o);
    }
  }
  return out;
}

describe('flowlogd run: flow logs at kinds 0-3 equal conntrack', { skip }, () => {
  let lab!: Lab;
  let cluster: Cluster;
  let metaDir = '';
  const daemons: Flowlogd[] = [];
  suiteLab(
    (l) => {
      lab = l;
      cluster = new Cluster(lab, `node-${lab.prefix}`);
      metaDir = mkdtempSync(join(tmpdir(), 'flowlogd-meta-'));
    },
    async () => {
      for (const d of daemons) {
        await d.stop();
        rmSync(d.dir, { recursive: true, force: true });
      }
      if (metaDir) rmSync(metaDir, { recursive: true, force: true });
    },
  );

  test('two ReplicaSets of three pods and an unknown peer: every record exact at every kind', async () => {
    const access = cluster.addReplicaSet('default', 'access', 'client', 3);
    const nginx = cluster.addReplicaSet('web', 'nginx', 'backend', 3);
    const stranger = cluster.addUnknown();
    const metadata = join(metaDir, 'cluster.yaml');
    cluster.writeMetadata(metadata);
    for (const p of nginx.pods) await lab.serve(p, 8080);
    // UDP and ICMP complete when conntrack destroys them: make that quick, and re-dump
    // every second so expired entries are reaped (and reported) at once.
    lab.setHostSysctl('net.netfilter.nf_conntrack_udp_timeout', '2');
    lab.setHostSysctl('net.netfilter.nf_conntrack_udp_timeout_stream', '2');
    lab.setHostSysctl('net.netfilter.nf_conntrack_icmp_timeout', '2');

    for (const kind of [0, 1, 2, 3]) {
      daemons.push(
        new Flowlogd(
          cli(null, {
            metadata,
            interfaces: 'cali*',
            nodeName: cluster.nodeName,
            flowLogsFlushInterval: `${FLUSH_S}s`,
            flowLogsIdleTimeout: `${IDLE_S}s`,
            conntrackResyncInterval: '1s',
            flowLogsFileAggregationKindForAllowed: kind,
          }),
        ),
      );
    }
    await Promise.all(daemons.map((d) => d.started));
    await until('lifecycle source logged', () =>
      daemons.every((d) => d.stderr.includes('"lifecycle":"conntrack"')),
    );
    // Start right after every daemon flushed, so all traffic falls in one interval and
    // labels intersect over every pod of each ReplicaSet.
    await until('first flushes', () => daemons.every((d) => d.flushes >= 1));

    const servers = nginx.pods.map((p) => p.ipv4).join(',');
    await Promise.all([
      ...access.pods.map((c) =>
        lab.traffic(c, cli('tcp', { host: servers, port: 8080, conns: 2, send: 2000, recv: 10000 })),
      ),
      ...access.pods.map((c) =>
        lab.traffic(c, cli('udp', { host: servers, port: 8080, flows: 1, datagrams: 3, size: 200 })),
      ),
      lab.traffic(
        stranger,
        cli('tcp', { host: nginx.pods[0]!.ipv4, port: 8080, conns: 1, send: 500, recv: 700 }),
      ),
    ]);
    for (const c of access.pods) for (const s of nginx.pods) lab.ping(c, s.ipv4, 2);
    const entries = conntrackEntries().filter(
      (e) => ['tcp', 'udp', 'icmp'].includes(e.proto) && e.src.startsWith(`${lab.subnet4}.`),
    );
    assert.equal(entries.length, 9 * 2 + 9 + 9 + 1, 'conntrack saw every connection');

    // Let conntrack destroy UDP/ICMP entries and the records report them completed.
    const flushesNow = daemons.map((d) => d.flushes);
    await until('completion flushes', () => daemons.every((d, i) => d.flushes >= flushesNow[i]! + 2), 30000);
    for (const d of daemons) assert.equal(await d.stop(), 0, 'clean exit');

    const byIp = new Map<string, Endpoint>();
    for (const rs of cluster.replicaSets) {
      for (const p of rs.pods) {
        const labels = Object.entries(p.labels!)
          .map(([k, v]) => `${k}=${v}`)
          .sort();
        byIp.set(p.ipv4, {
          type: 'wep',
          name: p.name,
          aggr: `${rs.generateName}*`,
          ns: rs.namespace,
          ip: p.ipv4,
          labels,
        });
      }
    }
    const endpointOf = (ip: string): Endpoint =>
      byIp.get(ip) ?? { type: 'net', name: '-', aggr: 'pvt', ns: '-', ip, labels: [] };

    const expectedRecords = [9 * 2 * 2 + 9 * 2 + 9 * 2 + 2, 0, 0, 0];
    for (const [i, d] of daemons.entries()) {
      const kind = i;
      const want = model(kind, entries, endpointOf);
      const recs = d
        .records()
        .filter((r) => r.proto !== 'icmp6' && !String(r.source_ip ?? '').startsWith('fe80'));
      const got = new Map<string, { sums: number[]; completed: number; labels: Set<string> }>();
      for (const r of recs) {
        assert.ok(r.end_time > r.start_time, 'end_time after start_time');
        assert.equal(r['@timestamp'], r.end_time * 1000);
        assert.equal(r.host, cluster.nodeName);
        assert.ok(
          r.num_flows >= r.num_flows_started && r.num_flows >= r.num_flows_completed,
          'num_flows bounds',
        );
        const k = keyOf(r);
        const g = got.get(k) ?? { sums: [0, 0, 0, 0, 0], completed: 0, labels: new Set<string>() };
        g.sums = [
          g.sums[0]! + r.bytes_in,
          g.sums[1]! + r.bytes_out,
          g.sums[2]! + r.packets_in,
          g.sums[3]! + r.packets_out,
          g.sums[4]! + r.num_flows_started,
        ];
        g.completed += r.num_flows_completed;
        g.labels.add(JSON.stringify([r.source_labels, r.dest_labels]));
        got.set(k, g);
      }
      assert.deepEqual(
        [...got.keys()].sort(),
        [...want.keys()].sort(),
        `kind ${kind}: exactly the expected record keys`,
      );
      for (const [k, w] of want) {
        const g = got.get(k)!;
        assert.deepEqual(g.sums, w.sums, `kind ${kind}: bytes in/out, packets in/out, flows started of ${k}`);
        assert.equal(g.completed, w.sums[4], `kind ${kind}: every connection completed once: ${k}`);
        assert.deepEqual(
          [...g.labels],
          [JSON.stringify([{ labels: w.labels[0] }, { labels: w.labels[1] }])],
          `kind ${kind}: labels intersected over the folded endpoints: ${k}`,
        );
      }
      if (kind === 0)
        assert.equal(want.size, expectedRecords[0], 'kind 0: one key per connection and reporter');
      console.log(`kind ${kind}: ${recs.length} records, ${got.size} keys, ${entries.length} connections`);
    }
    // Folding: kind 2 has one key per (ReplicaSet pair or net, proto, port, reporter).
    assert.equal(model(2, entries, endpointOf).size, 2 * 3 + 2);
    assert.equal(model(3, entries, endpointOf).size, 2 * 3 + 2);
  });

  test('a connection spanning three flushes: started in the first record, zero-byte while idle, completed in the last', async () => {
    const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-span-c` });
    const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-span-s` });
    await lab.serve(server, 7070);
    const d = new Flowlogd(
      cli(null, {
        interfaces: client.hostIf,
        flowLogsFlushInterval: '1s',
        flowLogsFileAggregationKindForAllowed: 0,
      }),
    );
    daemons.push(d);
    await d.started;
    const held = await lab.traffic(
      client,
      cli('tcp', { host: server.ipv4, port: 7070, conns: 1, send: 3000, recv: 100, hold: true }),
      { keep: true },
    );
    const f0 = d.flushes;
    await until('three more flushes', () => d.flushes >= f0 + 3);
    held.child.stdin!.write('go\n');
    await new Promise((r) => (held.child.exitCode !== null ? r(null) : held.child.once('exit', r)));
    const f1 = d.flushes;
    await until('the closing flush', () => d.flushes >= f1 + 2);
    assert.equal(await d.stop(), 0);
    const [ct] = conntrackEntries().filter((e) => e.src === client.ipv4 && e.proto === 'tcp');
    assert.ok(ct);
    const recs = d.records().filter((r) => r.proto === 'tcp' && r.source_ip === client.ipv4);
    assert.ok(recs.length >= 4, `one record per interval the connection was open (${recs.length})`);
    assert.deepEqual(
      recs.map((r) => [r.num_flows, r.num_flows_started, r.num_flows_completed]),
      [[1, 1, 0], ...recs.slice(1, -1).map(() => [1, 0, 0]), [1, 0, 1]],
      'started first, open in between, completed last',
    );
    const idle = recs.slice(1, -1).filter((r) => r.bytes_in + r.bytes_out === 0);
    assert.ok(idle.length >= 2, 'zero-byte records while idle');
    const sum = (f: 'bytes_in' | 'bytes_out' | 'packets_in' | 'packets_out') =>
      recs.reduce((a, r) => a + r[f], 0);
    // reporter src: out = client -> server.
    assert.deepEqual(
      [sum('bytes_out'), sum('packets_out'), sum('bytes_in'), sum('packets_in')],
      [ct.origBytes, ct.origPackets, ct.replyBytes, ct.replyPackets],
    );
    for (let i = 1; i < recs.length; i++)
      assert.equal(recs[i]!.start_time, recs[i - 1]!.end_time, 'intervals chain');
  });

  test('SIGTERM mid-interval: the final flush carries every byte counted', async () => {
    const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-term-c` });
    const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-term-s` });
    await lab.serve(server, 6060);
    const metricsPort = 20000 + Math.floor(Math.random() * 20000);
    const d = new Flowlogd(
      cli(null, {
        metricsPort,
        interfaces: `${client.hostIf},${server.hostIf}`,
        flowLogsFlushInterval: '10m',
        flowLogsFileAggregationKindForAllowed: 0,
      }),
    );
    daemons.push(d);
    await d.started;
    await lab.traffic(
      client,
      cli('tcp', { host: server.ipv4, port: 6060, conns: 5, send: 200000, recv: 3000 }),
    );
    await lab.traffic(
      client,
      cli('udp', { host: server.ipv4, port: 6060, flows: 3, datagrams: 4, size: 500 }),
    );
    assert.equal(d.flushes, 0, 'no interval ended yet');
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^flowlogd_datapath_attached_interfaces 2$/m, 'metrics scrape works');
    assert.match(metrics, /^flowlogd_lifecycle_source\{source="conntrack"\} 1$/m);
    assert.equal(await d.stop(), 0);
    const entries = conntrackEntries().filter(
      (e) => e.src === client.ipv4 && (e.proto === 'tcp' || e.proto === 'udp'),
    );
    assert.equal(entries.length, 8);
    const recs = d.records().filter((r) => r.source_ip === client.ipv4);
    for (const reporter of ['src', 'dst']) {
      const mine = recs.filter((r) => r.reporter === reporter);
      assert.equal(mine.length, 8, `one ${reporter} record per connection`);
      const bytes = mine.reduce((a, r) => a + r.bytes_in + r.bytes_out, 0);
      const packets = mine.reduce((a, r) => a + r.packets_in + r.packets_out, 0);
      assert.equal(
        bytes,
        entries.reduce((a, e) => a + e.origBytes + e.replyBytes, 0),
        `${reporter}: bytes`,
      );
      assert.equal(
        packets,
        entries.reduce((a, e) => a + e.origPackets + e.replyPackets, 0),
        `${reporter}: packets`,
      );
    }
  });

  test('SIGHUP applies a new flush interval from the config file; bad new settings are rejected and the old kept', async () => {
    const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-hup-c` });
    const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-hup-s` });
    await lab.serve(server, 5050);
    const config = join(metaDir, 'felix.yaml');
    const felix = (spec: string) =>
      writeFileSync(
        config,
        `apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n${spec}`,
      );
    felix('  flowLogsFlushInterval: 10m\n  flowLogsFileAggregationKindForAllowed: 0\n');
    const d = new Flowlogd(cli(null, { config, interfaces: client.hostIf }));
    daemons.push(d);
    await d.started;
    felix('  flowLogsFlushInterval: 1s\n  flowLogsFileAggregationKindForAllowed: 7\n');
    d.child.kill('SIGHUP');
    await until('rejection logged', () => d.stderr.includes('new settings rejected'));
    assert.match(d.stderr, /FlowLogsFileAggregationKindForAllowed|flowLogsFileAggregationKindForAllowed/);
    felix('  flowLogsFlushInterval: 1s\n  flowLogsFileAggregationKindForAllowed: 0\n');
    d.child.kill('SIGHUP');
    await until('reloaded', () => d.stderr.includes('"msg":"reloaded"'));
    await lab.traffic(client, cli('tcp', { host: server.ipv4, port: 5050, conns: 2, send: 100, recv: 100 }));
    // Two flushes within seconds, with the old interval at 10 minutes: the new one applies.
    await until('flushes on the new interval', () => d.flushes >= 2, 10_000);
    assert.equal(await d.stop(), 0);
    const tcp = d.records().filter((r) => r.proto === 'tcp' && r.source_ip === client.ipv4);
    assert.equal(
      tcp.reduce((a, r) => a + r.num_flows_started, 0),
      2,
      'both connections reported',
    );
  });

  test('a conntrack that cannot be opened: flowlogd says so and goes on with TCP flags and idle timeouts', async () => {
    const client = lab.addPod({ namespace: '-', name: `${lab.prefix}-noct-c` });
    const server = lab.addPod({ namespace: '-', name: `${lab.prefix}-noct-s` });
    await lab.serve(server, 4040);
    const d = new Flowlogd(
      cli(null, {
        interfaces: client.hostIf,
        conntrackNetns: `${lab.prefix}-no-such-netns`,
        flowLogsFlushInterval: '10m',
        flowLogsFileAggregationKindForAllowed: 0,
      }),
    );
    daemons.push(d);
    await d.started;
    assert.match(d.stderr, /going on without conntrack events/);
    assert.match(d.stderr, /"lifecycle":"tcp-flags\+idle"/);
    await lab.traffic(client, cli('tcp', { host: server.ipv4, port: 4040, conns: 2, send: 100, recv: 100 }));
    assert.equal(await d.stop(), 0);
    const tcp = d.records().filter((r) => r.proto === 'tcp' && r.source_ip === client.ipv4);
    assert.deepEqual(
      [tcp.reduce((a, r) => a + r.num_flows_started, 0), tcp.reduce((a, r) => a + r.num_flows_completed, 0)],
      [2, 2],
      'counted, and completed by FIN',
    );
  });
});
