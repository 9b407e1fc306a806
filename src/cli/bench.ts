// `flowlogd bench live|lab`: what flowlogd costs on this node (live) and under the
// standard traffic in a lab of pods (lab). See src/bench/. The bench's modules (and zod,
// which checks its JSON) are imported when a bench command runs: every other command,
// `run` above all, would otherwise carry them resident (zod alone is ~15 MB).
import { accessSync, constants, existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { SCENARIOS } from '../bench/scenarios.ts';
import { makeDirectory } from '../common/make-directory.ts';

const QUICK = { rounds: 1, seconds: 1 } as const;

function numberIn(flag: string, min: number, max: number, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
      throw new InvalidArgumentError(
        `${flag} ${JSON.stringify(value)}: must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`,
      );
    return n;
  };
}

function scenarioList(value: string): string[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!SCENARIOS.some((s) => s.name === n))
      throw new InvalidArgumentError(
        `--scenarios ${JSON.stringify(n)}: no such scenario; have ${SCENARIOS.map((s) => s.name).join(', ')}`,
      );
  return names;
}

function objectVariant(value: string, previous: Record<string, string>): Record<string, string> {
  const m = /^([a-z][\w-]*)=(.+)$/.exec(value);
  if (!m || ['none', 'empty', 'flowlogd', 'pmacctd', 'softflowd'].includes(m[1]!))
    throw new InvalidArgumentError(
      `--object ${JSON.stringify(value)}: must be NAME=FILE with a new lowercase NAME, e.g. old=/tmp/flow_tc.bpf.o`,
    );
  if (!existsSync(m[2]!))
    throw new InvalidArgumentError(`--object ${JSON.stringify(value)}: no file ${m[2]}`);
  return { ...previous, [m[1]!]: m[2]! };
}

export function addBenchCommand(program: Command): void {
  const bench = program
    .command('bench')
    .description('measure what flowlogd costs: on this node (live) or in a lab of pods (lab)');
  bench
    .command('live')
    .description(
      "BPF stats on for a while: ns per packet of the running programs, packets/s, the daemon's CPU and memory",
    )
    .option('--seconds <n>', 'how long to measure', numberIn('--seconds', 1, 3600, false), 10)
    .option('--all', "every loaded BPF program, not only flowlogd's", false)
    .option('--json', 'print the result as JSON instead of a table', false)
    .action(async (o: { seconds: number; all: boolean; json: boolean }) => {
      const { benchLive } = await import('../bench/live.ts');
      const { liveTable } = await import('../bench/report.ts');
      const r = await benchLive({ seconds: o.seconds, all: o.all });
      process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : liveTable(r));
    });
  bench
    .command('lab')
    .description(
      'build a lab of two pods and race no program, an empty program and flowlogd (and --peers) over the standard scenarios',
    )
    .option('--rounds <n>', 'interleaved rounds per scenario', numberIn('--rounds', 1, 100, true), 5)
    .option('--seconds <n>', 'measured seconds per run', numberIn('--seconds', 0.5, 60, false), 3)
    .option('--quick', `a smoke run: ${QUICK.rounds} round of ${QUICK.seconds} s`, false)
    .option('--peers', 'also pmacctd and softflowd capturing on the same interface', false)
    .option(
      '--scenarios <names>',
      `comma-separated, of ${SCENARIOS.map((s) => s.name).join(', ')} (default: all but ${SCENARIOS.filter(
        (s) => s.optional,
      )
        .map((s) => s.name)
        .join(', ')})`,
      scenarioList,
    )
    .option(
      '--output <file.json>',
      'where to write the JSON (the SVG chart goes next to it)',
      'flowlogd-bench-lab.json',
    )
    .option('--json', 'print the JSON on stdout instead of the table', false)
    .option(
      '--object <name=file.bpf.o>',
      'development A/B: also a variant NAME running flowlogd_in/_eg of that BPF object without the daemon (repeatable)',
      objectVariant,
      {},
    )
    .action(
      async (o: {
        object: Record<string, string>;
        rounds: number;
        seconds: number;
        quick: boolean;
        peers: boolean;
        scenarios?: string[];
        output: string;
        json: boolean;
      }) => {
        const rounds = o.quick ? QUICK.rounds : o.rounds;
        const seconds = o.quick ? QUICK.seconds : o.seconds;
        const command =
          `flowlogd bench lab ${process.argv.slice(process.argv.indexOf('lab') + 1).join(' ')}`.trim();
        const outputError = (err: unknown) =>
          new Error(`--output ${JSON.stringify(o.output)}: ${(err as Error).message}`);
        // The output's directory is made (and checked writable) before a run of minutes,
        // not after it, where an ENOENT threw the whole run away.
        try {
          await makeDirectory(dirname(o.output));
          accessSync(dirname(o.output), constants.W_OK);
          if (existsSync(o.output) && statSync(o.output).isDirectory())
            throw new Error('is a directory (name the JSON file to write)');
        } catch (err) {
          throw outputError(err);
        }
        const { benchLab } = await import('../bench/lab.ts');
        const { labChart } = await import('../bench/chart.ts');
        const { labTable } = await import('../bench/report.ts');
        const r = await benchLab({
          rounds,
          seconds,
          peers: o.peers,
          scenarios: o.scenarios,
          command,
          objects: o.object,
        });
        // On screen first: a write that fails now (a full disk) still leaves the figures.
        process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : labTable(r));
        const svg = `${o.output.replace(/\.json$/, '')}.svg`;
        try {
          writeFileSync(o.output, `${JSON.stringify(r, null, 2)}\n`);
          writeFileSync(svg, labChart(r));
        } catch (err) {
          throw outputError(err);
        }
        process.stderr.write(`bench: wrote ${o.output} and ${svg}\n`);
      },
    );
}
