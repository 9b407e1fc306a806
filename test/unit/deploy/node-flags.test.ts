// Node runs the daemon with the same flags wherever it is started: bin/flowlogd (the
// plain daemon, the lab, the kernel tests), the image's ENTRYPOINT (no shell there to
// run bin/flowlogd), and `npm run bench` (its figures are the daemon's). The flags set
// the daemon's memory (BENCHMARKS.md): one of them drifting makes figures that are not
// the shipped daemon's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const TOP = join(import.meta.dirname, '../../..');
const read = (p: string) => readFileSync(join(TOP, p), 'utf8');

function launcherFlags(): string[] {
  const exec = read('bin/flowlogd')
    .split('\n')
    .find((l) => l.startsWith('exec "$node"'));
  assert.ok(exec, 'bin/flowlogd: no exec "$node" line');
  return exec.split(/\s+/).filter((w) => w.startsWith('--'));
}

function imageFlags(): string[] {
  const line = read('Dockerfile')
    .split('\n')
    .find((l) => l.startsWith('ENTRYPOINT'));
  assert.ok(line, 'Dockerfile: no ENTRYPOINT');
  return (JSON.parse(line.slice('ENTRYPOINT'.length)) as string[]).filter((w) => w.startsWith('--'));
}

function benchFlags(): string[] {
  const m = /spawnSync\(\s*process\.execPath,\s*\[([^\]]*)`\$\{here\}/.exec(read('bench/run.ts'));
  assert.ok(m, 'bench/run.ts: no spawnSync of the benches');
  return [...m[1]!.matchAll(/'(--[^']+)'/g)].map((x) => x[1]!);
}

test('bin/flowlogd, the image and npm run bench start Node with the same flags', () => {
  const flags = launcherFlags();
  assert.deepEqual(flags, ['--expose-gc', '--max-semi-space-size=8', '--heap-growing-percent=50']);
  assert.deepEqual(imageFlags(), flags, 'Dockerfile ENTRYPOINT');
  assert.deepEqual(benchFlags(), flags, 'bench/run.ts');
  // And this Node takes them: a flag V8 dropped would stop the daemon from starting.
  const run = spawnSync(process.execPath, [...flags, '-e', '0'], { encoding: 'utf8' });
  assert.equal(run.status, 0, `node ${flags.join(' ')}: ${run.stderr}`);
});
