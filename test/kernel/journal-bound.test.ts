// The drain journal's bound (StateDirectoryMaxSizeMB, addon/src/journal.h): 3,000 active
// UDP flows drain 3,000 records (384 KB) a second into a journal bounded at 1 MiB, with
// an 8 s flush. The segments on disk never pass the bound by more than one cycle; the
// cycles past it are counted and not journaled, with one warning; journaling resumes once
// a flush removes what it covers; and no count is lost without a crash: every datagram
// the peer's nft counter saw is in the records.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../../src/lab/args.ts';
import { Flowlogd, until } from '../../src/lab/flowlogd.ts';
import type { Lab } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const FLOWS = 3000;
const PORT = 20000;
const BOUND = 1 << 20;
const CYCLE_BYTES = (FLOWS + 1) * 128; // a record a flow and the cycle's end frame
const METRICS_PORT = 19477;

function diskBytes(dir: string): number {
  let sum = 0;
  for (const f of readdirSync(dir)) {
    try {
      sum += statSync(join(dir, f)).size;
    } catch {
      // removed by a flush between the listing and the stat
    }
  }
  return sum;
}

async function eventually(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function datapathCounter(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  const m = new RegExp(`^flowlogd_datapath_total\\{counter="${name}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `flowlogd_datapath_total{counter="${name}"} in /metrics`);
  return Number(m[1]);
}

describe('the drain journal bound', { skip }, () => {
  let lab!: Lab;
  let d: Flowlogd | undefined;
  const state = mkdtempSync(join(tmpdir(), 'flowlogd-jbound-'));
  suiteLab(
    (l) => {
      lab = l;
    },
    async () => {
      await d?.stop();
      if (d) rmSync(d.dir, { recursive: true, force: true });
      rmSync(state, { recursive: true, force: true });
    },
  );

  test('past StateDirectoryMaxSizeMB cycles are counted, not journaled, until a flush; nothing is lost', async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-jc` });
    const peer = lab.addPod({ namespace: 'default', name: `${lab.prefix}-jp` });
    lab.exec(peer, 'nft', [
      `add table inet ${lab.prefix}_sink; add chain inet ${lab.prefix}_sink in { type filter hook input priority 0; }; add rule inet ${lab.prefix}_sink in ip saddr ${pod.ipv4} udp dport ${PORT}-${PORT + FLOWS} counter drop`,
    ]);
    d = new Flowlogd(
      cli(null, {
        interfaces: pod.hostIf,
        flowLogsFlushInterval: '8s',
        flowLogsFileAggregationKindForAllowed: 0,
        stateDirectory: state,
        stateDirectoryMaxSizeMb: 1,
        metricsPort: METRICS_PORT,
      }),
    );
    await d.started;
    const journal = join(state, 'journal');
    const { child: spray } = await lab.traffic(
      pod,
      cli('spray', { host: peer.ipv4, port: PORT, flows: FLOWS, every: 1 }),
      {
        keep: true,
      },
    );
    let largest = 0;
    const sample = setInterval(() => {
      largest = Math.max(largest, diskBytes(journal));
    }, 50);
    try {
      await eventually(
        'a cycle not journaled',
        async () => (await datapathCounter('journalSkippedCycles')) > 0,
        20_000,
      );
      const bytesAtFull = await datapathCounter('journalBytes');
      const flushes = d.flushes;
      await until('a flush', () => d!.flushes > flushes, 20_000);
      await eventually(
        'journaling again after the flush',
        async () => (await datapathCounter('journalBytes')) > bytesAtFull,
        10_000,
      );
      assert.ok(
        (await datapathCounter('journalSkippedRecords')) >= FLOWS,
        'a skipped cycle counts its records',
      );
    } finally {
      clearInterval(sample);
      spray.stdin?.end();
      await new Promise((r) => (spray.exitCode !== null ? r(null) : spray.once('exit', r)));
    }
    assert.ok(largest > 0, 'the journal was written');
    assert.ok(
      largest < BOUND + CYCLE_BYTES,
      `the journal held ${largest} B: past ${BOUND} by more than a cycle`,
    );
    const warnings = d.stderr.split('StateDirectoryMaxSizeMB').length - 1;
    assert.ok(warnings >= 1, 'the log says the journal is full');
    assert.ok(warnings <= d.flushes + 1, `at most one warning a flush interval (${warnings})`);
    assert.equal(await d.stop(), 0);

    const counter = JSON.parse(
      lab.exec(peer, 'nft', ['-j', 'list', 'table', 'inet', `${lab.prefix}_sink`]),
    ) as {
      nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[];
    };
    const arrived = counter.nftables
      .flatMap((o) => o.rule?.expr ?? [])
      .reduce((s, e) => s + (e.counter?.packets ?? 0), 0);
    const counted = d
      .records()
      .filter((r) => r.proto === 'udp' && r.source_ip === pod.ipv4 && r.dest_ip === peer.ipv4)
      .reduce((s, r) => s + r.packets_out, 0);
    assert.ok(arrived > 3 * FLOWS, `the peer saw ${arrived} datagrams`);
    assert.equal(counted, arrived, 'every datagram the peer saw is in the flow logs');
  });
});
