// SPEC §3 worked examples 1–8, each with exact expected records.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowAggregator } from '../../../src/aggregate/aggregator.ts';
import type { AggregationKind, FlowLogRecord } from '../../../src/aggregate/record.ts';
import { TcpFlag } from '../../../src/datapath/types.ts';
import { AT_DST, AT_SRC, metadata, pod, resolverWith, T0, upd } from './helpers.ts';

const FLUSH1 = T0 + 300_000;
const FLUSH2 = T0 + 600_000;
const FLUSH3 = T0 + 900_000;
const FLUSH4 = T0 + 1_200_000;

function agg(kind: AggregationKind, md = resolverWith()) {
  return new FlowAggregator({
    nodeName: 'node1',
    resolver: md,
    startTimeMs: T0,
    kindForAllowed: kind,
    kindForDenied: kind,
  });
}

function only(records: FlowLogRecord[]): FlowLogRecord {
  assert.equal(records.length, 1, `expected one record, got ${JSON.stringify(records, null, 1)}`);
  return records[0]!;
}

const iperfPods = metadata({
  pods: [
    pod('kube-system', 'iperf-4235-5623461', '10.0.0.1', 'iperf-4235-', { app: 'iperf' }),
    pod('default', 'nginx-412354-5123451', '20.0.0.1', 'nginx-412354-', { app: 'nginx' }),
    pod('kube-system', 'iperf-4235-5434134', '10.0.0.3', 'iperf-4235-', { app: 'iperf' }),
    pod('default', 'nginx-412354-6543645', '10.0.0.9', 'nginx-412354-', { app: 'nginx' }),
  ],
});

describe('SPEC §3 worked examples', () => {
  test('1: kind 0, unknown peers, reported at the destination: one full record', () => {
    const a = agg(0);
    a.observe(
      upd({
        srcIp: '10.0.0.1',
        dstIp: '20.0.0.1',
        srcPort: 54123,
        dstPort: 80,
        origPackets: 1,
        origBytes: 20,
        ...AT_DST,
      }),
    );
    const r = only(a.flush(FLUSH1));
    assert.deepEqual(r, {
      start_time: T0 / 1000,
      end_time: FLUSH1 / 1000,
      source_ip: '10.0.0.1',
      source_name: '-',
      source_name_aggr: 'pvt',
      source_namespace: '-',
      source_port: 54123,
      source_type: 'net',
      source_labels: { labels: [] },
      dest_ip: '20.0.0.1',
      dest_name: '-',
      dest_name_aggr: 'pub',
      dest_namespace: '-',
      dest_port: 80,
      dest_type: 'net',
      dest_labels: { labels: [] },
      dest_service_namespace: '-',
      dest_service_name: '-',
      dest_service_port: '-',
      dest_service_port_num: null,
      proto: 'tcp',
      action: 'allow',
      reporter: 'dst',
      policies: { all_policies: [], enforced_policies: [], pending_policies: [] },
      bytes_in: 20,
      bytes_out: 0,
      packets_in: 1,
      packets_out: 0,
      num_flows: 1,
      num_flows_started: 1,
      num_flows_completed: 0,
      http_requests_allowed_in: 0,
      http_requests_denied_in: 0,
      original_source_ips: null,
      num_original_source_ips: 0,
      host: 'node1',
      '@timestamp': FLUSH1,
    });
  });

  test('2: kind 1 folds source ports: one record, source_port null, num_flows 2', () => {
    const a = agg(1);
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '20.0.0.1', srcPort: 54123, origPackets: 1, origBytes: 20 }));
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '20.0.0.1', srcPort: 44123, origPackets: 2, origBytes: 100 }));
    const r = only(a.flush(FLUSH1));
    assert.equal(r.source_port, null);
    assert.equal(r.source_ip, '10.0.0.1');
    assert.equal(r.dest_ip, '20.0.0.1');
    assert.equal(r.dest_port, 80);
    assert.equal(r.num_flows, 2);
    assert.equal(r.num_flows_started, 2);
    assert.equal(r.packets_in, 3);
    assert.equal(r.bytes_in, 120);
  });

  test('3: kind 2 folds pods of one ReplicaSet by generateName', () => {
    const a = agg(2, resolverWith(iperfPods));
    a.observe(upd({ srcIp: '10.0.0.1', dstIp: '20.0.0.1', origPackets: 1, origBytes: 60 }));
    a.observe(
      upd({ srcIp: '10.0.0.3', dstIp: '10.0.0.9', origPackets: 1, origBytes: 60, interfaceName: 'cali2' }),
    );
    const r = only(a.flush(FLUSH1));
    assert.deepEqual(
      [r.source_ip, r.source_name, r.source_name_aggr, r.source_namespace, r.source_type, r.source_port],
      [null, '-', 'iperf-4235-*', 'kube-system', 'wep', null],
    );
    assert.deepEqual(
      [r.dest_ip, r.dest_name, r.dest_name_aggr, r.dest_namespace, r.dest_type, r.dest_port],
      [null, '-', 'nginx-412354-*', 'default', 'wep', 80],
    );
    assert.deepEqual([r.num_flows, r.num_flows_started, r.num_flows_completed], [2, 2, 0]);
    assert.deepEqual(r.source_labels, { labels: ['app=iperf'] });
  });

  test('3b: a pod without generateName keeps its own name as name_aggr', () => {
    const a = agg(2, resolverWith(metadata({ pods: [pod('default', 'standalone', '10.0.0.5', null)] })));
    a.observe(upd({ srcIp: '10.0.0.5', dstIp: '20.0.0.1', ...AT_SRC }));
    const r = only(a.flush(FLUSH1));
    assert.equal(r.source_name_aggr, 'standalone');
    assert.equal(r.source_name, '-');
    assert.equal(r.reporter, 'src');
  });

  test('4: lifecycle of two flows over three flushes, then the key is gone', () => {
    const a = agg(2, resolverWith(iperfPods));
    const A = { srcIp: '10.0.0.1', dstIp: '20.0.0.1' };
    const B = { srcIp: '10.0.0.3', dstIp: '10.0.0.9', interfaceName: 'cali2' };
    a.observe(upd({ ...A, origPackets: 1, origBytes: 60, origTcpFlags: TcpFlag.SYN }));
    a.observe(upd({ ...B, origPackets: 1, origBytes: 60, origTcpFlags: TcpFlag.SYN }));
    let r = only(a.flush(FLUSH1));
    assert.deepEqual([r.num_flows, r.num_flows_started, r.num_flows_completed], [2, 2, 0]);
    assert.deepEqual([r.packets_in, r.bytes_in], [2, 120]);

    const t2 = FLUSH1 + 1000;
    a.observe(upd({ ...A, origPackets: 3, origBytes: 200, lastSeenMs: t2 }));
    a.observe(
      upd({
        ...B,
        origPackets: 1,
        origBytes: 52,
        replyPackets: 1,
        replyBytes: 52,
        origTcpFlags: TcpFlag.FIN,
        replyTcpFlags: TcpFlag.FIN,
        lastSeenMs: t2,
      }),
    );
    r = only(a.flush(FLUSH2));
    assert.deepEqual([r.num_flows, r.num_flows_started, r.num_flows_completed], [2, 0, 1]);
    assert.deepEqual([r.packets_in, r.bytes_in, r.packets_out, r.bytes_out], [4, 252, 1, 52]);
    assert.equal(r.start_time, FLUSH1 / 1000);
    assert.equal(r.end_time, FLUSH2 / 1000);

    a.observe(
      upd({ ...A, origPackets: 1, origBytes: 40, origTcpFlags: TcpFlag.RST, lastSeenMs: FLUSH2 + 1000 }),
    );
    r = only(a.flush(FLUSH3));
    assert.deepEqual([r.num_flows, r.num_flows_started, r.num_flows_completed], [1, 0, 1]);
    assert.deepEqual([r.packets_in, r.bytes_in], [1, 40]);

    assert.deepEqual(a.flush(FLUSH4), []);
    assert.equal(a.stats().connections, 0);
  });

  test('5: labels are intersected over the endpoints folded into a record', () => {
    const md = metadata({
      pods: [
        pod('ns', 'a-1', '10.1.0.1', 'a-', { app: 'a' }),
        pod('ns', 'a-2', '10.1.0.2', 'a-', { app: 'a', extra: 'x' }),
        pod('ns', 'b-1', '10.2.0.1', 'b-', { tier: 'be' }),
        pod('ns', 'b-2', '10.2.0.2', 'b-', { tier: 'fe' }),
      ],
    });
    const a = agg(2, resolverWith(md));
    a.observe(upd({ srcIp: '10.1.0.1', dstIp: '10.2.0.1' }));
    a.observe(upd({ srcIp: '10.1.0.2', dstIp: '10.2.0.2' }));
    const r = only(a.flush(FLUSH1));
    assert.deepEqual(r.source_labels, { labels: ['app=a'] });
    assert.deepEqual(r.dest_labels, { labels: [] });
  });

  test('5b: labels are sorted k=v strings, and null when switched off', () => {
    const md = metadata({ pods: [pod('ns', 'a-1', '10.1.0.1', 'a-', { z: '1', app: 'a', m: 'x' })] });
    const on = agg(2, resolverWith(md));
    on.observe(upd({ srcIp: '10.1.0.1', dstIp: '8.8.8.8', ...AT_SRC }));
    assert.deepEqual(only(on.flush(FLUSH1)).source_labels, { labels: ['app=a', 'm=x', 'z=1'] });
    const off = new FlowAggregator({
      nodeName: 'node1',
      resolver: resolverWith(md),
      startTimeMs: T0,
      includeLabels: false,
      includePolicies: false,
    });
    off.observe(upd({ srcIp: '10.1.0.1', dstIp: '8.8.8.8', ...AT_SRC }));
    const r = only(off.flush(FLUSH1));
    assert.equal(r.source_labels, null);
    assert.equal(r.dest_labels, null);
    assert.equal(r.policies, null);
  });

  test('6: unknown peers fold into pvt and pub at kind 2', () => {
    const a = agg(2, resolverWith(metadata({ pods: [pod('ns', 'c-1', '10.1.0.1', 'c-')] })));
    const from = { srcIp: '10.1.0.1', ...AT_SRC };
    a.observe(upd({ ...from, dstIp: '192.168.0.14', origBytes: 10, origPackets: 1 }));
    a.observe(upd({ ...from, dstIp: '192.168.0.17', origBytes: 20, origPackets: 1 }));
    let recs = a.flush(FLUSH1);
    assert.equal(recs.length, 1);
    assert.deepEqual([recs[0]!.dest_name_aggr, recs[0]!.num_flows, recs[0]!.bytes_out], ['pvt', 2, 30]);

    const b = agg(2, resolverWith(metadata({ pods: [pod('ns', 'c-1', '10.1.0.1', 'c-')] })));
    b.observe(upd({ ...from, dstIp: '192.168.0.14' }));
    b.observe(upd({ ...from, dstIp: '192.168.0.17' }));
    b.observe(upd({ ...from, dstIp: '198.17.8.43' }));
    recs = b.flush(FLUSH1).sort((x, y) => x.dest_name_aggr.localeCompare(y.dest_name_aggr));
    assert.deepEqual(
      recs.map((r) => [r.dest_type, r.dest_name_aggr, r.dest_ip, r.num_flows]),
      [
        ['net', 'pub', null, 1],
        ['net', 'pvt', null, 2],
      ],
    );
  });

  test('7: the same 5-tuple allowed (at dst) and denied (at src) gives two records', () => {
    const a = agg(0);
    const t = { srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 5555, origPackets: 1, origBytes: 60 };
    a.observe(upd({ ...t, interfaceName: 'cali-dst', ...AT_DST }), 'allow');
    a.observe(upd({ ...t, interfaceName: 'cali-src', ...AT_SRC }), 'deny');
    const recs = a.flush(FLUSH1).sort((x, y) => x.action.localeCompare(y.action));
    assert.deepEqual(
      recs.map((r) => [r.action, r.reporter, r.source_ip, r.source_port, r.dest_ip, r.bytes_in, r.bytes_out]),
      [
        ['allow', 'dst', '10.0.0.1', 5555, '10.0.0.2', 60, 0],
        ['deny', 'src', '10.0.0.1', 5555, '10.0.0.2', 0, 60],
      ],
    );
  });

  test('8: kind 3 with a Service keeps service name/namespace/port number, drops port and port name', () => {
    const md = metadata({
      pods: [pod('ns', 'c-1', '10.1.0.1', 'c-')],
      services: [
        {
          name: 'foo-svc',
          namespace: 'foo-ns',
          clusterIps: ['10.96.0.10'],
          ports: [{ name: 'foo-port', port: 8080, protocol: 'TCP', targetPort: 80 }],
        },
      ],
    });
    const a = agg(3, resolverWith(md));
    a.observe(upd({ srcIp: '10.1.0.1', dstIp: '10.96.0.10', dstPort: 8080, ...AT_SRC }));
    const r = only(a.flush(FLUSH1));
    assert.deepEqual(
      [
        r.dest_port,
        r.dest_service_namespace,
        r.dest_service_name,
        r.dest_service_port,
        r.dest_service_port_num,
      ],
      [null, 'foo-ns', 'foo-svc', '-', 8080],
    );
    // The same at kind 0 keeps the port name.
    const k0 = agg(0, resolverWith(md));
    k0.observe(upd({ srcIp: '10.1.0.1', dstIp: '10.96.0.10', dstPort: 8080, ...AT_SRC }));
    const r0 = only(k0.flush(FLUSH1));
    assert.deepEqual(
      [r0.dest_port, r0.dest_service_port, r0.dest_service_port_num],
      [8080, 'foo-port', 8080],
    );
  });
});
