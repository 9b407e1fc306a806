// Signals around a running daemon: SIGTERM/SIGINT stop it (detach, drain, final flush; a
// second one exits at once), SIGHUP re-reads the settings. Handled from the first moment:
// a stop signal while the daemon starts abandons the start (onStopDuringStart: the start
// unwinds and undoes what it attached; the default action would kill it half-attached),
// a SIGHUP then is acted on once it has started.
import type { Logger } from 'pino';
import type { Config, ConfigError } from './config.ts';

/** What the signals drive (Daemon is one). */
export interface Stoppable {
  stop(): Promise<void>;
  reload(config: Config): Promise<void>;
}

export interface SignalOptions {
  /** Where the signals come from: `process`, or an EventEmitter in tests. */
  readonly signals: { on(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', listener: () => void): unknown };
  readonly log: Logger;
  /** The settings SIGHUP applies; throws (a ConfigError) when they are invalid. */
  readonly loadConfig: () => Config;
  /** Leaves at once: a second stop signal does not wait for the final flush. */
  readonly exit: (code: number) => void;
  /** A stop signal before attach(): the start is to be abandoned (it unwinds, then exits). */
  readonly onStopDuringStart?: (signal: string) => void;
}

export class SignalHandler {
  /** Resolves with the exit code once a stop signal's final flush is written (or failed). */
  readonly exited: Promise<number>;
  readonly #o: SignalOptions;
  #daemon: Stoppable | null = null;
  #stopRequested: string | null = null;
  #reloadRequested = false;
  #stopping = false;
  #resolveExit: (code: number) => void = () => {};

  constructor(o: SignalOptions) {
    this.#o = o;
    this.exited = new Promise<number>((resolve) => {
      this.#resolveExit = resolve;
    });
    o.signals.on('SIGTERM', () => this.#stop('SIGTERM'));
    o.signals.on('SIGINT', () => this.#stop('SIGINT'));
    o.signals.on('SIGHUP', () => this.#reload());
  }

  /** The daemon has started: act on what arrived meanwhile, and on every signal from now. */
  attach(daemon: Stoppable): void {
    this.#daemon = daemon;
    if (this.#reloadRequested) this.#reload();
    if (this.#stopRequested) this.#stop(this.#stopRequested);
  }

  #stop(signal: string): void {
    const { log } = this.#o;
    if (!this.#daemon) {
      if (this.#stopRequested !== null) {
        log.warn({ signal }, 'second signal during start-up: exiting at once');
        this.#o.exit(130);
        return;
      }
      this.#stopRequested = signal;
      log.info({ signal }, 'stop requested during start-up: abandoning the start');
      this.#o.onStopDuringStart?.(signal);
      return;
    }
    if (this.#stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for the final flush');
      this.#o.exit(130);
      return;
    }
    this.#stopping = true;
    log.info({ signal }, 'stopping: draining the kernel and writing a final flush');
    this.#daemon.stop().then(
      () => this.#resolveExit(0),
      (err) => {
        log.error({ err }, 'final flush failed');
        this.#resolveExit(1);
      },
    );
  }

  #reload(): void {
    const { log } = this.#o;
    if (!this.#daemon) {
      this.#reloadRequested = true;
      return;
    }
    try {
      const next = this.#o.loadConfig();
      this.#daemon.reload(next).catch((err) => log.error({ err }, 'reload failed'));
    } catch (err) {
      log.error(
        { problems: (err as ConfigError).problems ?? [String(err)] },
        'SIGHUP: new settings rejected; keeping the current ones',
      );
    }
  }
}
