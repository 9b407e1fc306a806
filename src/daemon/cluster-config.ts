// Settings that follow the FelixConfiguration objects live. Each change (and each SIGHUP)
// loads the whole configuration again with the objects as they are now; when that fails
// only because of a value in an object, the problems are logged (object, field, value,
// what is allowed) and the configuration is loaded with the last objects that were good,
// so one bad edit of a CR never stops or half-configures the daemon. A problem in the
// command line, environment or file still fails, as it does without a cluster.
import type { Logger } from 'pino';
import { type Config, ConfigError } from './config.ts';
import { type ClusterSettings, NO_CLUSTER_SETTINGS } from './felix-configuration.ts';

export class LiveClusterConfig {
  readonly #load: (cluster: ClusterSettings) => Config;
  readonly #log: Logger;
  #good: ClusterSettings = NO_CLUSTER_SETTINGS;
  /** Loads rejected because of a FelixConfiguration value (for metrics and tests). */
  rejected = 0;

  constructor(load: (cluster: ClusterSettings) => Config, log: Logger) {
    this.#load = load;
    this.#log = log;
  }

  /** The configuration with `cluster` if it is valid, else with the last good objects. Throws a ConfigError for other sources' problems. */
  apply(cluster: ClusterSettings): Config {
    try {
      const c = this.#load(cluster);
      this.#good = cluster;
      return c;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      const fromCluster = err.problems.filter((p) => p.includes('(FelixConfiguration '));
      if (fromCluster.length === 0 || cluster === this.#good) throw err;
      const c = this.#load(this.#good); // throws if the rest is bad too
      this.rejected++;
      for (const p of fromCluster) {
        this.#log.error(
          { problem: p },
          `invalid FelixConfiguration value, keeping the last good configuration: ${p}`,
        );
      }
      return c;
    }
  }
}
