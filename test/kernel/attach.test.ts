// Attaching and detaching: interfaces followed as they come and go, foreign TC state left
// exactly as it was, nothing of ours left behind, a crashed run's leftovers removed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FlowDatapath, type InterfaceEvent } from '../../src/datapath/datapath.ts';
import { cli } from '../../src/lab/args.ts';
import { until } from '../../src/lab/flowlogd.ts';
import { attachForeignProgram, conntrackEntries, type Lab, run } from '../../src/lab/lab.ts';
import { FlowCollector, kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const FOREIGN = fileURLToPath(new URL('../../bpf/.output/foreign_tc.bpf.o', import.meta.url));
const HOLD = fileURLToPath(new URL('./fixtures/hold-datapath.ts', import.meta.url));

/** Everything TC and BPF know about an interface, minus counters. */
function tcState(ifname: string): string {
  const q = run('tc', ['qdisc', 'show', 'dev', ifname]);
  const fi = run('tc', ['filter', 'show', 'dev', ifname, 'ingress']);
  const fe = run('tc', ['filter', 'show', 'dev', ifname, 'egress']);
  return `${q}\n--ingress--\n${fi}\n--egress--\n${fe}`;
}

/** Another agent's filter (the foreign pass-through program) on an existing clsact qdisc. */
function addForeignFilter(ifname: string, dir: 'ingress' | 'egress', prio: number, handle: string): void {
  run('tc', [
    'filter',
    'add',
    'dev',
    ifname,
    dir,
    'prio',
    String(prio),
    'handle',
    handle,
    'bpf',
    'da',
    'obj',
    FOREIGN,
    'sec',
    'tc',
  ]);
}

const BPF_LINK_TYPE_TCX = 11;

/** Programs among `ids` that have a tcx link (Debian's bpftool 7.1 prints tcx links by number). */
function tcxLinked(ids: number[]): number[] {
  const links = JSON.parse(run('bpftool', ['-j', 'link', 'show'])) as {
    prog_id: number;
    type: string | number;
  }[];
  return links
    .filter((l) => (l.type === BPF_LINK_TYPE_TCX || l.type === 'tcx') && ids.includes(l.prog_id))
    .map((l) => l.prog_id);
}

function progExists(id: number): boolean {
  try {
    run('bpftool', ['prog', 'show', 'id', String(id)]);
    return true;
  } catch {
    return false;
  }
}

describe('attach, follow, detach', { skip }, () => {
  let lab!: Lab;
  suiteLab((l) => {
    lab = l;
  });

  test('a pod created after start is counted from its first connection; a deleted one is forgotten', async () => {
    const server = lab.addPod({ namespace: 'default', name: `${lab.prefix}-srv` });
    const flows = new FlowCollector();
    const dp = new FlowDatapath({ interfaces: ['cali*'], drainIntervalMs: 200 }, flows.onUpdate);
    const events: string[] = [];
    dp.on('attached', (e: InterfaceEvent) => events.push(`+${e.name}`));
    dp.on('detached', (e: InterfaceEvent) => events.push(`-${e.name}`));
    try {
      assert.ok(
        dp.interfaces().some((i) => i.name === server.hostIf),
        'existing pod attached at start',
      );
      await lab.serve(server, 8080);
      const late = lab.addPod({ namespace: 'default', name: `${lab.prefix}-late` });
      // No waiting for the attach: the connection starts as soon as the pod exists.
      await lab.traffic(
        late,
        cli('tcp', { host: server.ipv4, port: 8080, conns: 1, send: 1000, recv: 1000 }),
      );
      await dp.sync();
      assert.ok(events.includes(`+${late.hostIf}`), 'attach event for the new pod');
      const [ct] = conntrackEntries().filter((e) => e.src === late.ipv4 && e.proto === 'tcp');
      assert.ok(ct, 'conntrack saw the connection');
      const [f] = flows.find(late.hostIf, ct);
      assert.ok(f, 'the new pod interface counted the connection');
      assert.equal(f.origTcpFlags & 0x02, 0x02, 'its SYN was seen');
      assert.deepEqual(
        [f.origPackets, f.origBytes, f.replyPackets, f.replyBytes],
        [ct.origPackets, ct.origBytes, ct.replyPackets, ct.replyBytes],
      );
      run('ip', ['netns', 'del', late.netns]);
      lab.pods.splice(lab.pods.indexOf(late), 1);
      await dp.sync();
      // The link watcher hears of the deletion on its own thread: waited for, not slept on.
      await until('a detach event for the deleted pod', () => events.includes(`-${late.hostIf}`), 10_000);
      assert.equal(
        dp.interfaces().some((i) => i.name === late.hostIf),
        false,
        'forgotten',
      );
    } finally {
      await dp.stop();
      dp.close();
    }
  });

  for (const mode of ['tcx', 'clsact'] as const) {
    test(`${mode}: a foreign TC program and clsact qdisc are left exactly as they were; nothing of ours remains`, async () => {
      const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-foreign-${mode}` });
      const peer = lab.addPod({ namespace: 'default', name: `${lab.prefix}-peer-${mode}` });
      attachForeignProgram(pod.hostIf);
      const beforeState = tcState(pod.hostIf);
      const flows = new FlowCollector();
      const dp = new FlowDatapath({ interfaces: [pod.hostIf], attachMode: mode }, flows.onUpdate);
      const ids = dp.progIds();
      try {
        assert.equal(dp.attachMode, mode);
        if (mode === 'tcx') {
          assert.deepEqual(tcxLinked(ids).sort(), [...ids].sort(), 'our two tcx links');
        } else {
          assert.match(tcState(pod.hostIf), /flowlogd_in/);
          assert.match(tcState(pod.hostIf), /flowlogd_eg/);
        }
        lab.ping(pod, peer.ipv4, 3);
        await dp.sync();
        const icmp = [...flows.flows.values()].filter((f) => f.proto === 1);
        assert.equal(icmp.length, 1);
        assert.deepEqual(
          [icmp[0]!.origPackets, icmp[0]!.replyPackets],
          [3, 3],
          'counted with the foreign program beside it',
        );
      } finally {
        await dp.stop();
        dp.close();
      }
      assert.equal(tcState(pod.hostIf), beforeState, 'TC state unchanged');
      assert.deepEqual(tcxLinked(ids), [], 'no tcx link left');
      // The kernel frees a detached classifier's program after an RCU grace period.
      for (let i = 0; i < 50 && ids.some(progExists); i++) await new Promise((r) => setTimeout(r, 50));
      for (const id of ids) assert.equal(progExists(id), false, `program ${id} freed`);
      assert.deepEqual(
        readdirSync('/sys/fs/bpf').filter((n) => n.includes('flowlogd')),
        [],
        'nothing pinned',
      );
    });
  }

  test('clsact: removes its own filters but leaves the qdisc it added (others may share it)', async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-ownq` });
    assert.doesNotMatch(tcState(pod.hostIf), /clsact/);
    const dp = new FlowDatapath({ interfaces: [pod.hostIf], attachMode: 'clsact' }, () => {});
    assert.match(tcState(pod.hostIf), /clsact/);
    // Another agent adds its filter to the qdisc flowlogd created.
    addForeignFilter(pod.hostIf, 'ingress', 7, '1');
    await dp.stop();
    dp.close();
    const after = tcState(pod.hostIf);
    assert.doesNotMatch(after, /flowlogd_/, 'no filter of ours left');
    assert.match(after, /foreign_pass/, "the other agent's filter survives");
    assert.match(after, /clsact/);
  });

  test('clsact: a half-made attachment is undone by the same teardown as a detach; the interface stays as it was', async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-half` });
    // Another agent's filter at flowlogd's egress handle and priority: our ingress filter
    // goes on, the egress one cannot.
    run('tc', ['qdisc', 'add', 'dev', pod.hostIf, 'clsact']);
    addForeignFilter(pod.hostIf, 'egress', 1, '0xf10e');
    const beforeState = tcState(pod.hostIf);
    const failed: InterfaceEvent[] = [];
    const dp = new FlowDatapath({ interfaces: [pod.hostIf], attachMode: 'clsact' }, () => {});
    dp.on('attach-failed', (e: InterfaceEvent) => failed.push(e));
    try {
      assert.deepEqual(dp.interfaces(), [], 'not attached');
      assert.equal(dp.stats().attachFailures, 1);
      assert.equal(tcState(pod.hostIf), beforeState, 'ingress filter removed, qdisc and foreign filter kept');
      await dp.sync();
      assert.equal(failed.length, 1);
      assert.equal(failed[0]!.name, pod.hostIf);
      assert.equal(failed[0]!.mode, 'clsact');
      assert.match(
        failed[0]!.message ?? '',
        new RegExp(`^attaching clsact egress filter to ${pod.hostIf}: `),
      );
    } finally {
      await dp.stop();
      dp.close();
    }
    assert.equal(tcState(pod.hostIf), beforeState);
  });

  test("a crashed run's clsact filters are removed at the next start; foreign ones stay", async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-crash` });
    attachForeignProgram(pod.hostIf);
    const beforeState = tcState(pod.hostIf);
    const child = spawn(process.execPath, [HOLD, pod.hostIf, 'clsact'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`hold-datapath exited ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.match(tcState(pod.hostIf), /flowlogd_in/, 'the killed run left its filters');
    const dp = new FlowDatapath({ interfaces: [pod.hostIf] }, () => {});
    try {
      assert.equal(dp.attachMode, 'tcx');
      assert.equal(tcState(pod.hostIf), beforeState, 'leftovers gone, foreign program untouched');
    } finally {
      await dp.stop();
      dp.close();
    }
    assert.equal(tcState(pod.hostIf), beforeState);
  });

  test('the programs load in a process taking a signal every 50 µs (a sampling profiler)', async () => {
    // node --cpu-prof sends the main thread SIGPROF at each sample; the verifier gives up
    // with EAGAIN while a signal is pending, so every load attempt failed before the
    // loader held signals back (addon/src/loader.cc).
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-sig` });
    const profiles = mkdtempSync(join(tmpdir(), 'flowlogd-prof-'));
    const child = spawn(
      process.execPath,
      ['--cpu-prof', '--cpu-prof-interval', '50', '--cpu-prof-dir', profiles, HOLD, pod.hostIf, 'tcx'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (c) => {
      err += c;
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.once('data', (c) => resolve(String(c)));
        child.once('exit', (code) => reject(new Error(`hold-datapath exited ${code}: ${err}`)));
      });
      const ready = (JSON.parse(line) as { ready: { name: string; mode: string }[] }).ready;
      assert.deepEqual(
        ready.map((i) => [i.name, i.mode]),
        [[pod.hostIf, 'tcx']],
      );
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(profiles, { recursive: true, force: true });
    }
  });
});
