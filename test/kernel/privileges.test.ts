// flowlogd with fewer capabilities (issue 14 item 9), run under setpriv as a DaemonSet
// without privileged: true would be. Without CAP_SYS_ADMIN the crash-leftover sweep
// cannot open a program by id: it says so for each filter it could not check (they stay
// attached), and a load refused for a missing capability names the capability.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FlowDatapath } from '../../src/datapath/datapath.ts';
import { cli } from '../../src/lab/args.ts';
import { Flowlogd } from '../../src/lab/flowlogd.ts';
import { type Lab, run } from '../../src/lab/lab.ts';
import { kernelSkipReason, suiteLab } from './helpers.ts';

const skip = kernelSkipReason();
const HOLD = fileURLToPath(new URL('./fixtures/hold-datapath.ts', import.meta.url));

/** Runs under exactly `caps` (bounding, permitted and effective sets, as root). */
const only = (caps: string[]) => [
  'setpriv',
  `--bounding-set=-all,${caps.map((c) => `+${c}`).join(',')}`,
  '--inh-caps=-all',
  '--',
];

/** Program ids of the clsact filters on a hook of `ifname`. */
function filterProgIds(ifname: string, hook: 'ingress' | 'egress'): number[] {
  return [...run('tc', ['filter', 'show', 'dev', ifname, hook]).matchAll(/flowlogd_\w+.* id (\d+)/g)].map(
    (m) => Number(m[1]),
  );
}

describe('reduced capabilities', { skip }, () => {
  let lab!: Lab;
  const dirs: string[] = [];
  suiteLab(
    (l) => {
      lab = l;
    },
    () => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  );

  test("without CAP_SYS_ADMIN: a crashed run's clsact filters are named in a warning, not silently kept", async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-caps` });
    const child = spawn(process.execPath, [HOLD, pod.hostIf, 'clsact'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`hold-datapath exited ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const [inId] = filterProgIds(pod.hostIf, 'ingress');
    const [egId] = filterProgIds(pod.hostIf, 'egress');
    assert.ok(inId !== undefined && egId !== undefined, 'the killed run left its filters');
    try {
      const d = new Flowlogd(
        cli(null, { interfaces: pod.hostIf, conntrack: false }),
        only(['bpf', 'perfmon', 'net_admin']),
      );
      dirs.push(d.dir);
      await d.started;
      assert.equal(await d.stop(), 0);
      const warnings = d.stderr
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string; interface?: string })
        .filter((l) => l.level === 40 && l.interface === pod.hostIf);
      const line = (hook: string, id: number) =>
        `${pod.hostIf}: the clsact ${hook} filter at flowlogd's handle 0xf10e, priority 1 (program id ${id}) ` +
        "could not be checked for a crashed run's leftover: opening a program by id needs CAP_SYS_ADMIN; " +
        `if it is flowlogd's it stays attached (remove it with: tc filter del dev ${pod.hostIf} ${hook} pref 1 handle 0xf10e bpf)`;
      assert.deepEqual(
        warnings.map((w) => w.msg),
        [`${line('ingress', inId)}; ${line('egress', egId)}`],
      );
      assert.deepEqual(
        [filterProgIds(pod.hostIf, 'ingress'), filterProgIds(pod.hostIf, 'egress')],
        [[inId], [egId]],
        'left attached, as the warning says',
      );
    } finally {
      // With every capability the sweep removes them.
      const dp = new FlowDatapath({ interfaces: [pod.hostIf] }, () => {});
      await dp.stop();
      dp.close();
    }
    assert.deepEqual([filterProgIds(pod.hostIf, 'ingress'), filterProgIds(pod.hostIf, 'egress')], [[], []]);
  });

  test('CAP_BPF + CAP_NET_ADMIN alone: the load error names CAP_PERFMON as missing', async () => {
    const pod = lab.addPod({ namespace: 'default', name: `${lab.prefix}-caps2` });
    const d = new Flowlogd(
      cli(null, { interfaces: pod.hostIf, conntrack: false }),
      only(['bpf', 'net_admin']),
    );
    dirs.push(d.dir);
    await assert.rejects(d.started);
    assert.equal(d.child.exitCode, 1);
    const fatal = d.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string; code?: string })
      .filter((l) => l.level === 60);
    assert.deepEqual(
      fatal.map((l) => [l.code, l.msg]),
      [
        [
          'ERR_BPF_LOAD',
          'loading the flow programs (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, or CAP_SYS_ADMIN; missing CAP_PERFMON): Permission denied',
        ],
      ],
    );
  });
});
