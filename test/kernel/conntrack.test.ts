// Conntrack events, Services and denied traffic against the real kernel: DNAT'd
// connections show their backend and Service (iptables and nftables DNAT), UDP/ICMP end
// when conntrack destroys them, policy drops become deny records equal to the rule's own
// counters, an overrun resyncs without losing a lifecycle, and connections that predate
// flowlogd are counted from its start.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowAggregator } from '../../src/aggregate/aggregator.ts';
import type { FlowLogRecord } from '../../src/aggregate/record.ts';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import type { ConntrackEvent } from '../../src/datapath/types.ts';
import type { PodMeta, ServiceMeta } from '../../src/enrich/kube.ts';
import { EndpointResolver } from '../../src/enrich/resolver.ts';
import { cli } from '../../src/lab/args.ts';
import { until } from '../../src/lab/flowlogd.ts';
import { conntrackEntries, type Lab, type Pod, run } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

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
  let lab!: Lab;
  suiteLab((l) => {
    lab = l;
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
      // iptables creates the nat table (and its PREROUTING chain) on first use: if it does
      // that here, the test removes it again.
      const natExisted = style === 'iptables' && run('nft', ['list', 'tables']).includes('table ip nat');
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
        await lab.traffic(
          client,
          cli('tcp', { host: cip, port: 80, conns: 6, parallel: 1, send: 2000, recv: 5000 }),
        );
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
          if (!natExisted) run('nft', ['delete', 'table', 'ip', 'nat']);
        } else run('nft', ['delete', 'table', 'ip', table]);
      }
    });
  }

  function plainResolver(pods: Pod[]): EndpointResolver {
    const r = new EndpointResolver({
      nodeName: 'node1',
      hostEndpoints: false,
      networkSets: false,
      historyMs: 600_000,
    });
    r.update(
      { pods: pods.map((p) => podMeta(p, null)), services: [], nodes: [], namespaces: [], networkSets: [] },
      Date.now(),
    );
    return r;
  }

  /** A client and a server pod, named `<tag>c-…` and `<tag>s-…`. */
  function podPair(tag: string): [client: Pod, server: Pod] {
    const client = lab.addPod({ namespace: 'default', name: `${tag}c-${lab.prefix}` });
    return [client, lab.addPod({ namespace: 'default', name: `${tag}s-${lab.prefix}` })];
  }

  /** A pipeline watching `pods`, which are all its resolver knows. */
  function pipelineOf(pods: Pod[], opts?: ConstructorParameters<typeof Pipeline>[3]): Pipeline {
    return new Pipeline(lab, pods, plainResolver(pods), opts);
  }

  /** Flushes every `everyMs` until `done(records so far)` or the deadline; returns all flushes of kind 0. */
  async function flushUntil(
    p: Pipeline,
    everyMs: number,
    deadlineMs: number,
    done: (all: FlowLogRecord[][]) => boolean,
  ) {
    const all: FlowLogRecord[][] = [];
    const end = Date.now() + deadlineMs;
    while (Date.now() < end) {
      all.push((await p.flush())[0]!);
      if (done(all)) break;
      await sleep(everyMs);
    }
    return all;
  }

  test('UDP and ICMP flows complete when conntrack destroys them, not at the idle timeout', async () => {
    lab.setHostSysctl('net.netfilter.nf_conntrack_udp_timeout', '2');
    lab.setHostSysctl('net.netfilter.nf_conntrack_icmp_timeout', '2');
    const [client, server] = podPair('udp');
    // A re-dump every second makes the kernel reap expired entries (and send their
    // DESTROY) instead of waiting for garbage collection.
    const p = pipelineOf([client, server], {
      resyncMs: 1000,
      idleMs: 100,
      kinds: [0],
    });
    try {
      await lab.serve(server, 8080);
      // Before the first packet: every flow's last packet is later, so no DESTROY can come
      // less than the 2 s timeout after this, however slowly the traffic runs.
      const beforeTraffic = Date.now();
      await lab.traffic(
        client,
        cli('udp', { host: server.ipv4, port: 8080, flows: 5, datagrams: 2, size: 200 }),
      );
      lab.ping(client, server.ipv4, 3);
      const mine = (rs: FlowLogRecord[]) =>
        rs.filter((r) => r.source_ip === client.ipv4 && (r.proto === 'udp' || r.proto === 'icmp'));
      const sum = (all: FlowLogRecord[][], f: 'num_flows_started' | 'num_flows_completed') =>
        all.flatMap(mine).reduce((s, r) => s + r[f], 0);
      const all = await flushUntil(p, 500, 20_000, (a) => sum(a, 'num_flows_completed') >= 12);
      assert.equal(
        mine(all[0]!).reduce((s, r) => s + r.num_flows_completed, 0),
        0,
        'not completed by the 100 ms idle timeout',
      );
      assert.equal(sum(all, 'num_flows_started'), 12, '6 flows (5 UDP + 1 ICMP) on two veths');
      assert.equal(sum(all, 'num_flows_completed'), 12);
      const destroys = p.events.filter((e) => e.type === 2 && e.src === client.ipv4);
      assert.equal(destroys.length, 6);
      const delays = destroys.map((e) => e.timeMs - beforeTraffic);
      assert.ok(
        Math.min(...delays) >= 2000,
        `not before conntrack timed them out: DESTROY ${delays.join(',')} ms after the traffic began`,
      );
    } finally {
      await p.close();
    }
  });

  test('a DROP rule for one pod pair gives deny records equal to its nft counter; allowed traffic alongside is unaffected', async () => {
    const [client, server] = podPair('deny');
    const other = lab.addPod({ namespace: 'default', name: `denyo-${lab.prefix}` });
    const table = `${lab.prefix}_deny`;
    // Drops UDP to port 9999, and 1000-byte datagrams to 8080 (a flow both allowed and denied).
    run(
      'nft',
      ['-f', '-'],
      `table inet ${table} {\n chain deny_fwd {\n  type filter hook forward priority -10; policy accept;\n  ip saddr ${client.ipv4} ip daddr ${server.ipv4} udp dport 9999 counter drop\n  ip saddr ${client.ipv4} ip daddr ${server.ipv4} udp length 1008 counter drop\n }\n}\n`,
    );
    const p = pipelineOf([client, server, other], {
      kinds: [0, 1],
    });
    try {
      await lab.serve(server, 8080);
      await lab.serve(other, 8080);
      const script = `const d=require('dgram');const s=d.createSocket('udp4');s.bind(41000,()=>{const send=(n,size,port)=>{for(let i=0;i<n;i++)s.send(Buffer.alloc(size),port,'${server.ipv4}')};send(4,100,8080);send(3,1000,8080);send(5,300,9999);setTimeout(()=>s.close(),500)})`;
      lab.exec(client, process.execPath, ['-e', script]);
      await lab.traffic(
        client,
        cli('tcp', { host: other.ipv4, port: 8080, conns: 3, send: 1000, recv: 1000 }),
      );
      await lab.traffic(
        client,
        cli('tcp', { host: server.ipv4, port: 8080, conns: 2, send: 1000, recv: 1000 }),
      );
      const [k0, k1] = await p.flush();
      const counters = [
        ...run('nft', ['list', 'table', 'inet', table]).matchAll(/counter packets (\d+) bytes (\d+)/g),
      ].map((m) => [Number(m[1]), Number(m[2])]);
      assert.deepEqual(
        counters.map((c) => c[0]),
        [5, 3],
      );
      const deny = k0!.filter((r) => r.action === 'deny');
      assert.equal(deny.length, 2, 'port 9999 flow and the large datagrams of the 8080 flow');
      for (const r of deny) {
        assert.deepEqual(
          [r.reporter, r.source_ip, r.dest_ip, r.source_port, r.drop_reason],
          ['src', client.ipv4, server.ipv4, 41000, 'NETFILTER_DROP'],
        );
        const c = counters[r.dest_port === 9999 ? 0 : 1]!;
        assert.deepEqual(
          [r.packets_out, r.bytes_out, r.packets_in, r.bytes_in],
          [c[0], c[1], 0, 0],
          `deny to ${r.dest_port} equals the rule's counter`,
        );
      }
      // The 8080 flow also has its allowed part, with exactly the small datagrams and the echoes.
      const allowed = k0!.filter(
        (r) =>
          r.action === 'allow' && r.proto === 'udp' && r.dest_port === 8080 && r.source_ip === client.ipv4,
      );
      assert.equal(allowed.length, 2, 'allowed part, reported at both veths');
      for (const r of allowed) {
        const [sent, got] =
          r.reporter === 'src' ? [r.packets_out, r.packets_in] : [r.packets_in, r.packets_out];
        assert.deepEqual([sent, got], [4, 4], `${r.reporter}: 4 allowed datagrams each way`);
      }
      assert.equal(
        k0!.filter((r) => r.action === 'allow' && r.dest_port === 9999).length,
        0,
        'a fully denied flow has no allow record',
      );
      // Allowed TCP alongside equals conntrack.
      for (const e of conntrackEntries().filter((x) => x.proto === 'tcp' && x.src === client.ipv4)) {
        for (const r of k0!.filter((x) => x.source_port === e.sport && x.proto === 'tcp')) {
          assert.equal(r.action, 'allow');
          const out = r.reporter === 'src' ? [r.packets_out, r.bytes_out] : [r.packets_in, r.bytes_in];
          assert.deepEqual(out, [e.origPackets, e.origBytes]);
        }
      }
      // Kind 1 (the default for denied): source port gone, one record per flow's destination port.
      assert.equal(k1!.filter((r) => r.action === 'deny').length, 2);
      const s = p.dp.stats();
      assert.ok((s.kernel.dropsPolicy ?? 0) >= 8);
    } finally {
      await p.close();
      run('nft', ['delete', 'table', 'inet', table]);
    }
  });

  test("a drop of traffic from off the node to a pod is reported as the pod's deny (reporter dst)", async () => {
    const pod = lab.addPod({ namespace: 'default', name: `inp-${lab.prefix}` });
    const remote = lab.addPod({ namespace: '-', name: `inr-${lab.prefix}` }, { remote: true });
    const table = `${lab.prefix}_ingress`;
    run(
      'nft',
      ['-f', '-'],
      `table inet ${table} {\n chain deny_in {\n  type filter hook forward priority -10; policy accept;\n  ip saddr ${remote.ipv4} ip daddr ${pod.ipv4} udp dport 9999 counter drop\n }\n}\n`,
    );
    const p = new Pipeline(lab, [pod, remote], plainResolver([pod]), { kinds: [0] });
    try {
      await lab.serve(pod, 8080);
      // Allowed traffic first: the pod talks, so it is known to be behind this node.
      await lab.traffic(
        remote,
        cli('udp', { host: pod.ipv4, port: 8080, flows: 1, datagrams: 2, size: 100 }),
      );
      await lab.traffic(
        remote,
        cli('udp', { host: pod.ipv4, port: 9999, flows: 2, datagrams: 3, size: 200 }),
      );
      const [k0] = await p.flush();
      const [packets, bytes] = [
        ...run('nft', ['list', 'table', 'inet', table]).matchAll(/counter packets (\d+) bytes (\d+)/g),
      ].map((m) => [Number(m[1]), Number(m[2])])[0]!;
      assert.equal(packets, 6);
      const deny = k0!.filter((r) => r.action === 'deny');
      assert.equal(deny.length, 2, 'one deny record per blocked flow');
      for (const r of deny) {
        assert.deepEqual(
          [r.reporter, r.source_type, r.source_ip, r.dest_type, r.dest_ip, r.dest_port, r.drop_reason],
          ['dst', 'net', remote.ipv4, 'wep', pod.ipv4, 9999, 'NETFILTER_DROP'],
        );
      }
      assert.deepEqual(
        [deny.reduce((a, r) => a + r.packets_in, 0), deny.reduce((a, r) => a + r.bytes_in, 0)],
        [packets, bytes],
        "the denies equal the rule's counter",
      );
    } finally {
      await p.close();
      run('nft', ['delete', 'table', 'inet', table]);
    }
  });

  test('an IPv6 drop behind an extension header is keyed like the TC program keyed it', async () => {
    const [client, server] = podPair('v6');
    const table = `${lab.prefix}_v6deny`;
    run(
      'nft',
      ['-f', '-'],
      `table inet ${table} {\n chain deny_fwd {\n  type filter hook forward priority -10; policy accept;\n  ip6 saddr ${client.ipv6} ip6 daddr ${server.ipv6} udp dport 9999 counter drop\n }\n}\n`,
    );
    const p = pipelineOf([client, server], { kinds: [0] });
    try {
      // Three datagrams carrying a Destination Options header (PadN) before UDP.
      const py = `import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6, 59, bytes([0,0,1,4,0,0,0,0]))\ns.bind(('::', 41999))\nfor i in range(3): s.sendto(b'x'*100, ('${server.ipv6}', 9999))\n`;
      lab.exec(client, 'python3', ['-c', py]);
      const counter = () =>
        [...run('nft', ['list', 'table', 'inet', table]).matchAll(/counter packets (\d+) bytes (\d+)/g)].map(
          (m) => [Number(m[1]), Number(m[2])],
        )[0]!;
      // The datagrams may wait in the pod's neighbour queue until the gateway's address is
      // resolved: flush once the rule has seen them all, not when python returns.
      await until('the rule dropped all three', () => counter()[0] === 3, 5000);
      const [k0] = await p.flush();
      const [packets, bytes] = counter();
      assert.equal(packets, 3);
      // (Neighbour discovery from the pod's address is ICMPv6 of its own.)
      const mine = k0!.filter((r) => r.source_ip === client.ipv6 && r.proto !== 'icmp6');
      assert.deepEqual(
        mine.map((r) => [r.action, r.proto, r.source_port, r.dest_port, r.packets_out, r.bytes_out]),
        [['deny', 'udp', 41999, 9999, packets, bytes]],
        'one deny record under the UDP ports, no allow record, no record under the option header',
      );
    } finally {
      await p.close();
      run('nft', ['delete', 'table', 'inet', table]);
    }
  });

  test('an overrun of a tiny receive buffer is counted and after the resync every connection started and completed once', async () => {
    lab.setHostSysctl('net.netfilter.nf_conntrack_udp_timeout', '2');
    const [client, server] = podPair('ov');
    const p = pipelineOf([client, server], {
      rcvbuf: 1024,
      resyncMs: 1000,
      kinds: [0],
    });
    try {
      await lab.serve(server, 8080);
      const flows = 300;
      // Parallel clients make bursts of NEW events the tiny buffer cannot hold.
      const results = await Promise.all(
        [0, 1, 2].map(() =>
          lab.traffic(
            client,
            cli('udp', { host: server.ipv4, port: 8080, flows: String(flows / 3), datagrams: 1, size: 50 }),
          ),
        ),
      );
      // A source port can be reused while conntrack still holds its entry: that is one
      // connection, so count distinct 5-tuples.
      const n = new Set(
        results.flatMap((r) => (r.line as { udp: { sport: number }[] }).udp.map((x) => x.sport)),
      ).size;
      const mine = (rs: FlowLogRecord[]) =>
        rs.filter((r) => r.source_ip === client.ipv4 && r.proto === 'udp');
      const sum = (all: FlowLogRecord[][], f: 'num_flows_started' | 'num_flows_completed') =>
        all.flatMap(mine).reduce((s, r) => s + r[f], 0);
      const all = await flushUntil(p, 500, 25_000, (a) => sum(a, 'num_flows_completed') >= 2 * n);
      const ct = p.dp.stats().conntrack!;
      console.log(`overrun test: ${JSON.stringify(ct)}`);
      assert.ok(ct.overruns > 0, 'the tiny buffer overran');
      assert.ok(ct.resyncs > 1);
      assert.equal(sum(all, 'num_flows_started'), 2 * n, 'started once on each veth');
      assert.equal(sum(all, 'num_flows_completed'), 2 * n, 'completed once on each veth');
      const perFlow = new Map<number, number>();
      for (const r of all.flatMap(mine))
        perFlow.set(r.source_port!, (perFlow.get(r.source_port!) ?? 0) + r.num_flows_completed);
      assert.ok([...perFlow.values()].every((n) => n === 2));
    } finally {
      await p.close();
    }
  });

  test('a burst of new connections is read in few wake-ups: at most one per coalescing wait', async () => {
    const [client, server] = podPair('co');
    const p = pipelineOf([client, server], { kinds: [0] });
    try {
      await lab.serve(server, 8081);
      await until('the listener is up', () => p.dp.stats().conntrack !== undefined);
      const c0 = p.dp.stats().conntrack!;
      const t0 = performance.now();
      const flows = 300;
      const r = await lab.traffic(
        client,
        cli('udp', { host: server.ipv4, port: 8081, flows: String(flows), datagrams: 1, size: 20 }),
      );
      // Connections, not flows: a source port used again while conntrack holds its entry is one.
      const n = new Set((r.line as { udp: { sport: number }[] }).udp.map((x) => x.sport)).size;
      // Every NEW of the burst read (other traffic on the host only adds events).
      await until('the burst read', () => p.dp.stats().conntrack!.eventsNew - c0.eventsNew >= n);
      const windowMs = performance.now() - t0;
      const c1 = p.dp.stats().conntrack!;
      const reads = c1.reads - c0.reads;
      // After each read that found events the listener waits 5 ms (kCoalesceMs) unless
      // poked (nothing here syncs): so no more reads than 5 ms steps in the window, where
      // reading each event on arrival took ~200 wake-ups for 300.
      const bound = Math.floor(windowMs / 5) + 1;
      console.log(
        `coalescing: ${c1.eventsNew - c0.eventsNew} NEW events in ${reads} reads over ${windowMs.toFixed(0)} ms (bound ${bound})`,
      );
      assert.ok(reads >= 1 && reads <= bound, `${reads} reads, at most ${bound}`);
      assert.ok(reads < n / 3, `${reads} reads for ${n} connections`);
    } finally {
      await p.close();
    }
  });

  test('connections open before start are counted from start and complete correctly', async () => {
    const [client, server] = podPair('pre');
    await lab.serve(server, 9090);
    const { child } = await lab.traffic(
      client,
      cli('tcp', { host: server.ipv4, port: 9090, conns: 4, send: 20000, recv: 3000, hold: true }),
      { keep: true },
    );
    const p = pipelineOf([client, server], { kinds: [0] });
    try {
      await sleep(300);
      child.stdin?.write('go\n');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.on('exit', r)));
      const mine = (rs: FlowLogRecord[]) =>
        rs.filter((r) => r.proto === 'tcp' && r.source_ip === client.ipv4);
      const first = mine((await p.flush())[0]!);
      assert.equal(first.length, 8, 'four connections at two veths');
      for (const r of first) {
        assert.equal(r.dest_port, 9090, 'oriented by conntrack: the client initiated');
        // Opened before flowlogd saw them: carried in, not started in this interval.
        assert.deepEqual([r.num_flows, r.num_flows_started], [1, 0]);
      }
      await sleep(300);
      const second = mine((await p.flush())[0]!);
      const completed = [...first, ...second].reduce((s, r) => s + r.num_flows_completed, 0);
      assert.equal(completed, 8, 'each completed once');
      assert.ok(p.aggs[0]!.stats().conntrackJoined >= 8, 'joined to the entries of the start dump');
    } finally {
      await p.close();
    }
  });
});
