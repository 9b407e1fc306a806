// The daemon's metrics port: /readyz gated on the datapath and the metadata source's
// sync, /livez, and metrics named as Prometheus expects. Real timers and a real socket;
// the in-memory datapath and sink of fakes.ts.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../../src/daemon/config.ts';
import { Daemon } from '../../../src/daemon/daemon.ts';
import type { ClusterMetadata } from '../../../src/enrich/kube.ts';
import type { MetadataListener, MetadataSource } from '../../../src/enrich/source.ts';
import { MemorySink, memoryDatapath } from './fakes.ts';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

class FakeSource implements MetadataSource {
  synced = false;
  listener: MetadataListener | null = null;
  async start(l: MetadataListener): Promise<void> {
    this.listener = l;
    const md: ClusterMetadata = { pods: [], services: [], nodes: [], namespaces: [], networkSets: [] };
    l(md);
  }
  async reload(): Promise<boolean> {
    return true;
  }
  close(): void {}
}

test('metrics port: /readyz waits for the metadata source and other conditions, /livez, Prometheus names', async () => {
  const port = await freePort();
  const config = loadConfig({
    argv: [
      '--flow-logs-file-enabled=false',
      '--node-name',
      'node1',
      '--interfaces',
      'cali*',
      '--metrics-port',
      String(port),
      '--metrics-address',
      '127.0.0.1',
    ],
    env: {},
  });
  const source = new FakeSource();
  let felixSynced = false;
  const d = await Daemon.start({
    config,
    logger: pino({ level: 'silent' }),
    datapath: memoryDatapath(),
    sinks: [new MemorySink()],
    metadataSource: source,
    readiness: [{ name: 'felixconfiguration', check: () => (felixSynced ? null : 'not synced yet') }],
  });
  const get = async (p: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${p}`);
    return { status: r.status, body: await r.text() };
  };
  try {
    assert.deepEqual(await get('/readyz'), {
      status: 503,
      body: '[-] metadata: Kubernetes informers not synced yet\n[-] felixconfiguration: not synced yet\nfailed\n',
    });
    source.synced = true;
    assert.equal((await get('/readyz')).status, 503);
    felixSynced = true;
    assert.deepEqual(await get('/readyz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get('/livez'), { status: 200, body: 'ok\n' });

    await d.flush();
    const m = (await get('/metrics')).body;
    assert.match(m, /^# TYPE flowlogd_flushes_total counter$/m);
    assert.match(m, /^flowlogd_flushes_total 1$/m);
    assert.match(m, /^# TYPE flowlogd_kernel_drops_total counter$/m);
    assert.match(m, /^# TYPE flowlogd_aggregator_events_total counter$/m);
    assert.match(m, /^flowlogd_aggregator_events_total\{counter="flushes"\} 1$/m);
    assert.match(m, /^flowlogd_aggregator\{counter="connections"\} 0$/m);
    assert.match(m, /^# TYPE process_resident_memory_bytes gauge$/m);
    assert.match(m, /^# TYPE nodejs_eventloop_lag_seconds gauge$/m);
    assert.doesNotMatch(m, /^# TYPE flowlogd_\w+(?<!_total) counter$/m, 'every counter ends in _total');
  } finally {
    await d.stop();
  }
});
