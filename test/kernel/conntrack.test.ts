// Conntrack events, Services and denied traffic against the real kernel: DNAT'd
// connections show their backend and Service (iptables and nftables DNAT), UDP/ICMP end
// when conntrack destroys them, policy drops become deny records equal to the rule's own
// counters, an overrun resyncs without losing a lifecycle, and connections that predate
// flowlogd are counted from its start.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FlowAggregator } from '../../src/aggregate/aggregator.ts';
import type { FlowLogRecord } from '../../src/aggregate/record.ts';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import type { ConntrackEvent } from '../../src/datapath/types.ts';
import type { PodMeta, ServiceMeta } from '../../src/enrich/kube.ts';
import { EndpointResolver } from '../../src/enrich/resolver.ts';
import { conntrackEntries, Lab, type Pod, run } from '../lab/lab.ts';
import { kernelSkipReason } from './helpers.ts';

const skip = kernelSkipReason();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function podMeta(p: Pod, generateName: string | null): PodMeta {
  return {
    name: p.name,
    namespace: p.namespace,
    generateName,
    labels: { app: p.name.split('-')[1] ?? 'x' },
    ips: [p.ipv4, p.ipv6],
    nodeName: 'node1',
    hostNetwork: false,
  };
}

/** flowlogd's pipeline without the daemon: datapath → one aggregator per kind. */
class Pipeline {
  readonly dp: FlowDatapath;
  readonly aggs: FlowAggregator[];
  readonly events: { type: number; timeMs: number; src: string; dst: string; proto: number }[] = [];
  constructor(
    lab: Lab,
    pods: Pod[],
    resolver: EndpointResolver,
    opts: { rcvbuf?: number; resyncMs?: number; idleMs?: number; kinds?: number[] } = {},
  ) {
    const start = Date.now();
    this.aggs = (opts.kinds ?? [0, 1, 2, 3]).map(
      (k) =>
        new FlowAggregator({
          nodeName: 'node1',
          resolver,
          startTimeMs: start,
          kindForAllowed: k as 0,
          kindForDenied: k as 0,
          ...(opts.idleMs ? { idleTimeoutMs: opts.idleMs } : {}),
        }),
    );
    this.dp = new FlowDatapath(
      {
        interfaces: pods.map((p) => p.hostIf),
        drainIntervalMs: 200,
        conntrackEvents: true,
        dropTracing: true,
        ...(opts.rcvbuf ? { conntrackRcvbufBytes: opts.rcvbuf } : {}),
        ...(opts.resyncMs ? { conntrackResyncMs: opts.resyncMs } : {}),
      },
      (u) => {
        for (const a of this.aggs) a.observe(u);
      },
      (e: ConntrackEvent) => {
        if (e.origSrc.startsWith(`${lab.subnet4}.`))
          this.events.push({
            type: e.type,
            timeMs: Date.now(),
            src: e.origSrc,
            dst: e.origDst,
            proto: e.proto,
          });
        for (const a of this.aggs) a.observeConntrack(e);
      },
    );
  }
  async flush(): Promise<FlowLogRecord[][]> {
    await this.dp.sync();
    const now = Date.now();
    return this.aggs.map((a) => a.flush(now));
  }
  async close(): Promise<void> {
    await this.dp.stop();
    this.dp.close();
  }
}

describe('conntrack events, Services and denied traffic', { skip }, () => {
  let lab: Lab;
  before(() => {
    lab = new Lab();
    lab.enableConntrack();
  });
  after(async () => {
    await lab?.destroy();
  });

  for (const style of ['iptables', 'nftables'] as const) {
    test(`Service via ${style} DNAT to two backends: records at kinds 0-3 name the backends and the Service; counts equal conntrack's`, async () => {
      const tag = style === 'iptables' ? 'i' : 'n';
      const client = lab.addPod({ namespace: 'default', name: `cl${tag}-${lab.prefix}` });
      const b1 = lab.addPod({ namespace: 'shop', name: `web${tag}-${lab.prefix}-aaaaa` });
      const b2 = lab.addPod({ namespace: 'shop', name: `web${tag}-${lab.prefix}-bbbbb` });
      const cip = `${lab.subnet4.replace('10.213.', '10.214.')}.${style === 'iptables' ? 10 : 11}`;
      const chain = `${lab.prefix.toUpperCase()}-SVC`;
      const table = `${lab.prefix}_svc`;
      if (style === 'iptables') {
        run('iptables', ['-t', 'nat', '-N', chain]);
        run('iptables', ['-t', 'nat', '-I', 'PREROUTING', '-j', chain]);
        run('iptables', [
          '-t',
          'nat',
          '-A',
          chain,
          '-d',
          cip,
          '-p',
          'tcp',
          '--dport',
          '80',
          '-m',
          'statistic',
          '--mode',
          'nth',
          '--every',
          '2',
          '--packet',
          '0',
          '-j',
          'DNAT',
          '--to-destination',
          `${b1.ipv4}:8080`,
        ]);
        run('iptables', [
          '-t',
          'nat',
          '-A',
          chain,
          '-d',
          cip,
          '-p',
          'tcp',
          '--dport',
          '80',
          '-j',
          'DNAT',
          '--to-destination',
          `${b2.ipv4}:8080`,
        ]);
      } else {
        run(
          'nft',
          ['-f', '-'],
          `table ip ${table} {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  ip daddr ${cip} tcp dport 80 dnat to numgen inc mod 2 map { 0 : ${b1.ipv4} . 8080, 1 : ${b2.ipv4} . 8080 }\n }\n}\n`,
        );
      }
      const service: ServiceMeta = {
        name: `web${tag}`,
        namespace: 'shop',
        clusterIps: [cip],
        ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
      };
      const resolver = new EndpointResolver({
        nodeName: 'node1',
        hostEndpoints: false,
        networkSets: false,
        historyMs: 600_000,
      });
      resolver.update(
        {
          pods: [
            podMeta(client, null),
            podMeta(b1, `web${tag}-${lab.prefix}-`),
            podMeta(b2, `web${tag}-${lab.prefix}-`),
          ],
          services: [service],
          nodes: [],
          namespaces: [],
          networkSets: [],
        },
        Date.now(),
      );
      const p = new Pipeline(lab, [client, b1, b2], resolver);
      try {
        await lab.serve(b1, 8080);
        await lab.serve(b2, 8080);
        await lab.traffic(client, [
          'tcp',
          '--host',
          cip,
          '--port',
          '80',
          '--conns',
          '6',
          '--parallel',
          '1',
          '--send',
          '2000',
          '--recv',
          '5000',
        ]);
        // Only the Service's traffic (new pods also send IPv6 multicast listener reports).
        const [k0, k1, k2, k3] = (await p.flush()).map((rs) => rs.filter((r) => r.proto === 'tcp'));
        const entries = conntrackEntries().filter((e) => e.src === client.ipv4 && e.dst === cip);
        assert.equal(entries.length, 6, 'six connections in conntrack');
        // Kind 0: each connection once per reporter, backend as destination, Service filled.
        for (const e of entries) {
          const recs = k0!.filter((r) => r.source_port === e.sport);
          assert.equal(recs.length, 2, `src and dst records of ${e.sport}`);
          for (const r of recs) {
            assert.ok([b1.ipv4, b2.ipv4].includes(r.dest_ip!), `backend, not ${r.dest_ip}`);
            assert.equal(r.dest_port, 8080);
            assert.deepEqual(
              [r.dest_service_namespace, r.dest_service_name, r.dest_service_port, r.dest_service_port_num],
              ['shop', `web${tag}`, 'http', 80],
            );
            assert.equal(r.dest_namespace, 'shop');
            const out =
              r.reporter === 'src'
                ? [r.packets_out, r.bytes_out, r.packets_in, r.bytes_in]
                : [r.packets_in, r.bytes_in, r.packets_out, r.bytes_out];
            assert.deepEqual(
              out,
              [e.origPackets, e.origBytes, e.replyPackets, e.replyBytes],
              `counts of ${e.sport} (${r.reporter}) equal conntrack's`,
            );
            assert.deepEqual([r.num_flows, r.num_flows_started], [1, 1]);
          }
        }
        const backends = new Set(k0!.map((r) => r.dest_ip));
        assert.equal(backends.size, 2, 'both backends used');
        // Kind 1: source port gone; per backend and reporter.
        assert.equal(k1!.length, 4);
        for (const r of k1!) assert.equal(r.source_port, null);
        // Kinds 2 and 3: one record per reporter for the backends' prefix.
        for (const [kind, recs] of [
          [2, k2!],
          [3, k3!],
        ] as const) {
          assert.equal(recs.length, 2, `kind ${kind}`);
          for (const r of recs) {
            assert.deepEqual(
              [r.dest_ip, r.dest_name, r.dest_name_aggr],
              [null, '-', `web${tag}-${lab.prefix}-*`],
            );
            assert.equal(r.dest_port, kind === 2 ? 8080 : null);
            assert.equal(r.dest_service_port, kind === 2 ? 'http' : '-');
            assert.deepEqual([r.dest_service_name, r.dest_service_port_num], [`web${tag}`, 80]);
            assert.equal(r.num_flows, 6);
            const sum = entries.reduce((s, e) => s + e.origBytes, 0);
            assert.equal(r.reporter === 'src' ? r.bytes_out : r.bytes_in, sum);
          }
        }
      } finally {
        await p.close();
        if (style === 'iptables') {
          run('iptables', ['-t', 'nat', '-D', 'PREROUTING', '-j', chain]);
          run('iptables', ['-t', 'nat', '-F', chain]);
          run('iptables', ['-t', 'nat', '-X', chain]);
        } else run('nft', ['delete', 'table', 'ip', table]);
      }
    });
  }
});
