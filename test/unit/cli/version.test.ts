import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { projectPath } from '../../../src/common/paths.ts';

test('flowlogd --version prints package.json version and exits 0', () => {
  const { version } = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const out = execFileSync(process.execPath, [projectPath('src', 'cli', 'main.ts'), flag], {
      encoding: 'utf8',
    });
    assert.equal(out, `${version}\n`);
  }
});
