// Where flowlogd's files are, whether it runs from src/*.ts or compiled from dist/src/*.js
// (one directory deeper): paths are found from the project root, not from this module.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'flowlogd'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`flowlogd: no project root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The directory holding package.json, bin/, build/ and bpf/. */
export const PROJECT_ROOT = findRoot();

/** A path under the project root. */
export function projectPath(...parts: string[]): string {
  return join(PROJECT_ROOT, ...parts);
}

/** A sibling module of `moduleUrl` named `base`, with the caller's own extension (.ts or .js). */
export function siblingModule(moduleUrl: string, base: string): string {
  const self = fileURLToPath(moduleUrl);
  return join(dirname(self), base + (self.endsWith('.js') ? '.js' : '.ts'));
}
