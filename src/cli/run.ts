// `flowlogd run`: settings, logging and signals around the Daemon.
import pino from 'pino';
import { ConfigError, loadConfig } from '../daemon/config.ts';
import { Daemon } from '../daemon/daemon.ts';

/** Runs until SIGTERM/SIGINT; resolves with the process exit code. */
export async function run(argv: string[]): Promise<number> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ argv, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`flowlogd: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Logs go to stderr: stdout may carry flow log lines (--stdout).
  const log = pino({ level: config.logLevel, base: { node: config.nodeName } }, pino.destination(2));
  for (const w of config.warnings) log.warn(w);
  // Signals are handled from the first moment: one that arrives while the daemon starts
  // is acted on once it has (the default action would kill it half-attached).
  let daemon: Daemon | null = null;
  let stopRequested: string | null = null;
  let reloadRequested = false;
  let stopping = false;
  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => {
    resolveExit = resolve;
  });
  const stop = (signal: string) => {
    if (!daemon) {
      stopRequested = signal;
      return;
    }
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for the final flush');
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, 'stopping: draining the kernel and writing a final flush');
    daemon.stop().then(
      () => resolveExit(0),
      (err) => {
        log.error({ err }, 'final flush failed');
        resolveExit(1);
      },
    );
  };
  const reload = () => {
    if (!daemon) {
      reloadRequested = true;
      return;
    }
    try {
      const next = loadConfig({ argv, env: process.env });
      daemon.reload(next).catch((err) => log.error({ err }, 'reload failed'));
    } catch (err) {
      log.error(
        { problems: (err as ConfigError).problems ?? [String(err)] },
        'SIGHUP: new settings rejected; keeping the current ones',
      );
    }
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);
  try {
    daemon = await Daemon.start({ config, logger: log });
  } catch (err) {
    const e = err as Error & { code?: string; errno?: number };
    log.fatal({ code: e.code, errno: e.errno }, e.message);
    return 1;
  }
  if (reloadRequested) reload();
  if (stopRequested) stop(stopRequested);
  return exited;
}
