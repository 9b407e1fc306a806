import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectPath } from '../../../src/common/paths.ts';

test('flowlogd --version prints package.json version and exits 0', async () => {
  const { version } = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string };
  // Both flags at once: each run loads the whole CLI (a second or two).
  const outs = await Promise.all(
    ['--version', '-V'].map((flag) =>
      promisify(execFile)(process.execPath, [projectPath('src', 'cli', 'main.ts'), flag], {
        encoding: 'utf8',
      }),
    ),
  );
  assert.deepEqual(
    outs.map((o) => o.stdout),
    [`${version}\n`, `${version}\n`],
  );
});
