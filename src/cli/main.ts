// flowlogd's command line. Each command's code is imported when that command runs: the
// daemon (`run`) does not carry the lab, the demo or the bench resident.
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { projectPath } from '../common/paths.ts';
import { addConfigOptions } from '../daemon/config.ts';
import { addBenchCommand } from './bench.ts';

function globs(value: string): string[] {
  const list = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.length === 0)
    throw new InvalidArgumentError(`--interfaces ${JSON.stringify(value)}: give at least one glob`);
  return list;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 86400) {
    throw new InvalidArgumentError(
      `--seconds ${JSON.stringify(value)}: must be a number of seconds from 0 to 86400`,
    );
  }
  return n;
}

function attachMode(value: string): 'auto' | 'tcx' | 'clsact' {
  if (value !== 'auto' && value !== 'tcx' && value !== 'clsact') {
    throw new InvalidArgumentError(`--attach-mode ${JSON.stringify(value)}: must be auto, tcx or clsact`);
  }
  return value;
}

/** package.json's version (the image carries package.json beside dist/). */
function version(): string {
  const pkg = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

const program = new Command('flowlogd')
  .description('eBPF flow log collector')
  .version(version(), '-V, --version', 'print the version and exit')
  .showHelpAfterError();

program
  .command('dump')
  .description('count connections on interfaces and print one JSON line per (interface, connection)')
  .requiredOption('--interfaces <globs>', 'comma-separated interface name globs, e.g. cali*,eth0', globs)
  .option('--seconds <n>', 'stop after n seconds (default: until SIGINT)', seconds)
  .option('--attach-mode <mode>', 'auto (tcx if the kernel has it), tcx or clsact', attachMode, 'auto')
  .action(async (o: { interfaces: string[]; seconds?: number; attachMode: 'auto' | 'tcx' | 'clsact' }) => {
    const { dump } = await import('./dump.ts');
    await dump({
      interfaces: o.interfaces,
      seconds: o.seconds ?? null,
      attachMode: o.attachMode,
      write: (s) => process.stdout.write(s),
      log: (s) => process.stderr.write(`flowlogd: ${s}\n`),
    });
  });

program
  .command('demo')
  .description('build a small lab of pods on this machine, run traffic, show its flow logs at kinds 0-3')
  .action(async () => {
    const { demo } = await import('./demo.ts');
    await demo((s) => process.stdout.write(s));
  });

addBenchCommand(program);

addConfigOptions(
  program
    .command('run')
    .description(
      'collect flow logs on this node: the main job (settings: flags > FELIX_* env > --config file)',
    ),
).action(async () => {
  // loadConfig is the one parser of settings: hand it the raw arguments after `run`.
  const argv = process.argv.slice(process.argv.indexOf('run') + 1);
  const { run } = await import('./run.ts');
  process.exitCode = await run(argv);
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as Error & { code?: string; errno?: number };
  process.stderr.write(
    `flowlogd: ${e.message}${e.code ? ` (${e.code}${e.errno ? `, errno ${e.errno}` : ''})` : ''}\n`,
  );
  process.exitCode = 1;
}
