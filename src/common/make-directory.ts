// `mkdir -p` that always returns. Node's `fs.promises.mkdir(p, { recursive: true })` never
// returns for a path under /proc (it spins a core: FACTS.md), which hung flowlogd's start
// for good. Here each missing component is made in turn, and the first error is the
// answer, with its code and errno (ENOENT under /proc, ENOTDIR under a file, EROFS, EACCES).
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

export async function makeDirectory(path: string): Promise<void> {
  const missing: string[] = [];
  let p = resolve(path);
  for (;;) {
    try {
      if ((await stat(p)).isDirectory()) break;
      throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), {
        code: 'ENOTDIR',
        errno: -20,
        path: p,
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
