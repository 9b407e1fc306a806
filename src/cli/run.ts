// `flowlogd run`: settings, logging and signals around the Daemon, and where cluster
// metadata and settings come from: `--metadata FILE` (no cluster), else the Kubernetes
// API when a kubeconfig is found the way kubectl finds one (--kubeconfig, $KUBECONFIG,
// ~/.kube/config, in-cluster), else none (host mode).
//
// What only a cluster needs (the Kubernetes client, the informers, the FelixConfiguration
// watcher) is imported only when a kubeconfig was found: a daemon in host or file mode
// never loads it (tens of MiB resident, BENCHMARKS.md "Resident memory").
import type { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { type Config, ConfigError, loadConfig } from '../daemon/config.ts';
import { Daemon } from '../daemon/daemon.ts';
import type { FelixConfigurationWatcher } from '../daemon/felix-configuration.ts';
import { SignalHandler } from '../daemon/signals.ts';
import type { KubeMetadataSource } from '../enrich/k8s-source.ts';
import { chooseKubeConfig, loadKubeConfig } from '../enrich/kubeconfig.ts';

/** Runs until SIGTERM/SIGINT; resolves with the process exit code. */
export async function run(argv: string[]): Promise<number> {
  const env = process.env;
  let config: Config;
  try {
    config = loadConfig({ argv, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`flowlogd: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Logs go to stderr: stdout may carry flow log lines (--stdout).
  const log = pino({ level: config.logLevel, base: { node: config.nodeName } }, pino.destination(2));

  let kc: KubeConfig | null = null;
  if (config.metadata === null) {
    // --kubeconfig (command line or file) is a file; $KUBECONFIG is kubectl's list of files.
    const file = config.sources.kubeconfig === 'environment' ? null : config.kubeconfig;
    const choice = chooseKubeConfig({ file, env });
    if (choice !== null) {
      try {
        kc = await loadKubeConfig(choice);
      } catch (err) {
        log.fatal({ kubeconfig: choice.path }, `cannot load the kubeconfig: ${(err as Error).message}`);
        return 2;
      }
      log.info(
        { how: choice.how, path: choice.path, server: kc.getCurrentCluster()?.server },
        'Kubernetes API',
      );
    }
  }

  let load = (): Config => loadConfig({ argv, env });
  let watcher: FelixConfigurationWatcher | null = null;
  let daemon: Daemon | null = null;
  let source: KubeMetadataSource | undefined;
  if (kc !== null) {
    const [
      { LiveClusterConfig },
      { FelixConfigurationWatcher, NO_CLUSTER_SETTINGS },
      { DAEMON_RESOURCES },
      k8s,
    ] = await Promise.all([
      import('../daemon/cluster-config.ts'),
      import('../daemon/felix-configuration.ts'),
      import('../enrich/k8s-kinds.ts'),
      import('../enrich/k8s-source.ts'),
    ]);
    source = new k8s.KubeMetadataSource(kc, {
      logger: log.child({ component: 'kubernetes' }),
      resources: DAEMON_RESOURCES,
    });
    const live = new LiveClusterConfig(
      (cluster) => loadConfig({ argv, env, cluster, apiMetadata: true }),
      log.child({ component: 'felixconfiguration' }),
    );
    const w = new FelixConfigurationWatcher(kc, config.nodeName, {
      logger: log.child({ component: 'felixconfiguration' }),
      // A change applies as a SIGHUP does; a bad value keeps the last good configuration.
      onChange: (settings) => {
        if (daemon === null) return;
        try {
          const next = live.apply(settings);
          log.info(
            { default: settings.default !== null, node: settings.node?.name ?? null },
            'FelixConfiguration changed',
          );
          daemon.reload(next).catch((err) => log.error({ err }, 'reload failed'));
        } catch (err) {
          log.error({ err }, 'FelixConfiguration change not applied');
        }
      },
    });
    watcher = w;
    const settings = await w.start();
    load = () => live.apply(w.settings());
    try {
      config = live.apply(settings ?? NO_CLUSTER_SETTINGS);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`flowlogd: ${err.message}\n`);
        w.stop();
        return 2;
      }
      throw err;
    }
  }
  for (const w of config.warnings) log.warn(w);

  const startAbort = new AbortController();
  const signals = new SignalHandler({
    signals: process,
    log,
    loadConfig: load,
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
  try {
    daemon = await Daemon.start({
      config,
      logger: log,
      signal: startAbort.signal,
      metadataSource: source,
      readiness:
        watcher === null
          ? []
          : [{ name: 'felixconfiguration', check: () => (watcher.synced ? null : 'not synced yet') }],
      kubernetes:
        source === undefined
          ? undefined
          : { stats: () => ({ ...source.stats(), felixconfigurations: watcher!.stats() }) },
    });
  } catch (err) {
    watcher?.stop();
    if (startAbort.signal.aborted) {
      log.info('stopped during start-up');
      return 143;
    }
    const e = err as Error & { code?: string; errno?: number };
    log.fatal({ code: e.code, errno: e.errno }, e.message);
    return 1;
  }
  signals.attach(daemon);
  return exitAfterStop(signals, log, watcher);
}

/**
 * Exits once the daemon has stopped. It has counted what its sinks could not write by
 * the deadline; a stream's writes still pending (stdout into a pipe nobody reads) must
 * not keep the process alive: they did, until the reader died.
 */
export async function exitAfterStop(
  signals: SignalHandler,
  log: pino.Logger,
  watcher: { stop(): void } | null = null,
): Promise<never> {
  const code = await signals.exited;
  watcher?.stop();
  log.flush();
  process.exit(code);
}
