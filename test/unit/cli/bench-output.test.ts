// `flowlogd bench lab --output`: refused before the run (which takes minutes and needs
// root) when the JSON could not be written after it, with the flag and value named.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectPath } from '../../../src/common/paths.ts';

const run = (output: string) =>
  promisify(execFile)(
    process.execPath,
    [projectPath('src', 'cli', 'main.ts'), 'bench', 'lab', '--quick', '--output', output],
    {
      encoding: 'utf8',
    },
  ).then(
    () => assert.fail('the bench ran'),
    (err: { code: number; stderr: string }) => [err.code, err.stderr.trim()],
  );

test('bench lab --output: a directory, a path under a file and /proc are refused before the run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowlogd-bench-output-'));
  try {
    writeFileSync(join(dir, 'file'), '');
    const got = await Promise.all([
      run(dir),
      run(join(dir, 'file', 'x.json')),
      run('/proc/flowlogd-none/x.json'),
    ]);
    assert.deepEqual(got, [
      [1, `flowlogd: --output ${JSON.stringify(dir)}: is a directory (name the JSON file to write)`],
      [
        1,
        `flowlogd: --output ${JSON.stringify(join(dir, 'file', 'x.json'))}: ENOTDIR: not a directory, mkdir '${join(dir, 'file')}'`,
      ],
      [
        1,
        `flowlogd: --output "/proc/flowlogd-none/x.json": ENOENT: no such file or directory, mkdir '/proc/flowlogd-none'`,
      ],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
