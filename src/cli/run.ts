// `flowlogd run`: settings, logging and signals around the Daemon.
import pino from 'pino';
import { ConfigError, loadConfig } from '../daemon/config.ts';
import { Daemon } from '../daemon/daemon.ts';
import { SignalHandler } from '../daemon/signals.ts';

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
  const startAbort = new AbortController();
  const signals = new SignalHandler({
    signals: process,
    log,
    loadConfig: () => loadConfig({ argv, env: process.env }),
    exit: (code) => process.exit(code),
    onStopDuringStart: () => {
      startAbort.abort();
      // Every step of the start gives way to the abort at its next turn; one that does not
      // (a parse in progress) is not waited for past this.
      setTimeout(() => {
        log.warn('start-up did not unwind within 5 s of the stop signal: exiting');
        process.exit(143);
      }, 5000).unref();
    },
  });
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({ config, logger: log, signal: startAbort.signal });
  } catch (err) {
    if (startAbort.signal.aborted) {
      log.info('stopped during start-up');
      return 143;
    }
    const e = err as Error & { code?: string; errno?: number };
    log.fatal({ code: e.code, errno: e.errno }, e.message);
    return 1;
  }
  signals.attach(daemon);
  return exitAfterStop(signals, log);
}

/**
 * Exits once the daemon has stopped. It has counted what its sinks could not write by
 * the deadline; a stream's writes still pending (stdout into a pipe nobody reads) must
 * not keep the process alive: they did, until the reader died.
 */
export async function exitAfterStop(signals: SignalHandler, log: pino.Logger): Promise<never> {
  const code = await signals.exited;
  log.flush();
  process.exit(code);
}
