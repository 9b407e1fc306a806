// npm run bench [-- NAME... [OPTIONS]]: runs each benchmark in its own process (so one's memory or
// kernel state never colours another's) and prints their Markdown to stdout.
// `npm run bench` runs this compiled (dist/bench/run.js) and each benchmark compiled too:
// the daemon runs compiled JavaScript (bin/flowlogd), so memory figures are its own.
// Node runs with the flags bin/flowlogd uses (an 8 MB semi-space), plus --expose-gc
// so memory can be read after a collection. Names: the files bench/NAME.bench.ts. Figures go to BENCHMARKS.md with this command.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { projectPath } from '../src/common/paths.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
const ext = import.meta.url.endsWith('.js') ? '.js' : '.ts';
const all = readdirSync(here)
  .filter((f) => f.endsWith(`.bench${ext}`) && !f.startsWith('_'))
  .map((f) => f.slice(0, -`.bench${ext}`.length));
// Leading words name benchmarks; everything from the first option on goes to each of them
// (`npm run bench -- daemon --kinds 0`).
const args = process.argv.slice(2);
const firstOption = args.findIndex((a) => a.startsWith('-'));
const wanted = firstOption < 0 ? args : args.slice(0, firstOption);
const passOn = firstOption < 0 ? [] : args.slice(firstOption);
const names = wanted.length ? wanted : all;
for (const n of names) if (!all.includes(n)) throw new Error(`no benchmark ${n}; have: ${all.join(', ')}`);

execFileSync('make', ['-s', '-C', projectPath('bpf'), 'bench'], { stdio: 'inherit' });
let failed = 0;
for (const n of names) {
  process.stderr.write(`bench: ${n}\n`);
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--max-semi-space-size=8',
      '--heap-growing-percent=50',
      `${here}${n}.bench${ext}`,
      ...passOn,
    ],
    {
      stdio: 'inherit',
    },
  );
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
