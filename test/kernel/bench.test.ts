// `flowlogd bench` as shipped (bin/flowlogd): `bench lab --quick` runs every scenario
// and variant and produces numbers (their values are benchmarks, not tested here), and
// `bench live` finds a running daemon's programs and process and measures them.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { labResultSchema, liveResultSchema } from '../../src/bench/schema.ts';
import { projectPath } from '../../src/common/paths.ts';
import { Flowlogd } from '../../src/lab/flowlogd.ts';
import { Lab } from '../../src/lab/lab.ts';
import { kernelSkipReason } from './helpers.ts';

const skip = kernelSkipReason();
const FLOWLOGD = projectPath('bin', 'flowlogd');
const run = promisify(execFile);

describe('flowlogd bench', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('bench lab --quick: every scenario, every variant, numbers where they belong, a chart', async () => {
    // In a directory that does not exist yet: the bench makes it before the run.
    const out = join(dir, 'new', 'quick.json');
    const { stdout, stderr } = await run(FLOWLOGD, ['bench', 'lab', '--quick', '--output', out], {
      maxBuffer: 1 << 24,
    });
    assert.match(stderr, /round 1\/1/, 'progress line');
    const r = labResultSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
    assert.deepEqual(
      r.scenarios.map((s) => s.name),
      ['udp-saturate', 'tcp-rr', 'udp-pingpong', 'udp-1024'],
    );
    assert.deepEqual(r.variants, ['none', 'empty', 'flowlogd']);
    for (const s of r.scenarios) {
      assert.deepEqual(s.samples.map((x) => x.variant).sort(), ['empty', 'flowlogd', 'none'], s.name);
      for (const x of s.samples) {
        assert.ok(x.pps > 0 && x.packets > 0, `${s.name} ${x.variant}: packets went through`);
        assert.ok(x.generator.sent > 0, `${s.name} ${x.variant}: the generator sent`);
        assert.equal(x.nsPerRun === null, x.variant === 'none', `${s.name} ${x.variant}: ns per run`);
        assert.equal(x.collectorCpuSeconds === null, x.variant !== 'flowlogd', `${s.name} ${x.variant}: CPU`);
      }
      const f = s.samples.find((x) => x.variant === 'flowlogd')!;
      // Blasts only go one way (ingress at the client's veth); the others both ways.
      const hooks =
        s.name.includes('pingpong') || s.name.includes('rr') ? ['egress', 'ingress'] : ['ingress'];
      assert.deepEqual(Object.keys(f.nsPerRunByHook).sort(), hooks, s.name);
      assert.ok(f.collectorRssBytes! > 0 && f.cacheHitRate !== null, s.name);
      const sum = s.summary.find((v) => v.variant === 'flowlogd')!;
      assert.ok(sum.ratioToEmpty !== null && sum.nsAboveEmpty !== null, s.name);
      assert.ok(stdout.includes(`### ${s.name}`));
    }
    assert.match(readFileSync(join(dir, 'new', 'quick.svg'), 'utf8'), /^<svg[\s\S]*<\/svg>\n$/);
  });

  test("bench live: the running daemon's programs, its pid, CPU and memory", async () => {
    const lab = new Lab();
    let d: Flowlogd | undefined;
    try {
      const a = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-a` });
      const b = lab.addPod({ namespace: 'bench', name: `${lab.prefix}-b` });
      d = new Flowlogd(['--interfaces', a.hostIf]);
      await d.started;
      const live = spawn(FLOWLOGD, ['bench', 'live', '--seconds', '2', '--json']);
      let out = '';
      let err = '';
      live.stdout.on('data', (c) => {
        out += c;
      });
      const exited = new Promise((r) => live.once('exit', r));
      // Once its window is open (the progress line says so): 0.5 s of pings, 50 each way.
      await new Promise<void>((resolve) =>
        live.stderr.on('data', (c) => {
          err += c;
          if (err.includes('BPF stats on')) resolve();
        }),
      );
      lab.ping(a, b.ipv4, 50);
      assert.equal(await exited, 0, err);
      const r = liveResultSchema.parse(JSON.parse(out));
      const names = r.programs.filter((p) => p.owners.includes(d!.child.pid!)).map((p) => p.name);
      // Its TC programs, and the policy-drop tracer it loads by default.
      assert.deepEqual(names.sort(), ['flowlogd_drop', 'flowlogd_eg', 'flowlogd_in']);
      const tc = r.programs.filter((p) => p.owners.includes(d!.child.pid!) && p.hook.startsWith('tc '));
      assert.ok(tc.reduce((s, p) => s + p.runs, 0) >= 100, 'every ping and reply ran a program');
      assert.ok(tc.every((p) => p.nsPerRun !== null && p.nsPerRun > 0));
      const me = r.daemons.find((x) => x.pid === d!.child.pid);
      assert.ok(me && me.rssBytes > 0 && me.cpuSeconds >= 0);
    } finally {
      await d?.stop();
      if (d) rmSync(d.dir, { recursive: true, force: true });
      await lab.destroy();
    }
  });

  test('bench lab with a bad flag names it and its value', async () => {
    await assert.rejects(
      run(FLOWLOGD, ['bench', 'lab', '--rounds', '0']),
      /--rounds "0": must be an integer from 1 to 100/,
    );
    await assert.rejects(
      run(FLOWLOGD, ['bench', 'lab', '--scenarios', 'udp-saturate,nope']),
      /--scenarios "nope": no such scenario/,
    );
    assert.ok(existsSync(FLOWLOGD));
  });
});
