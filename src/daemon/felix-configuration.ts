// FelixConfiguration objects from the Kubernetes API as a settings source, read as
// Felix reads them: `default` for every node, `node.<nodeName>` for this one (it wins).
// Only the spec fields flowlogd knows are kept (the Felix settings of SETTINGS); other
// Felix settings in the object are Felix's business, not an error here. Validation is
// loadConfig's: it layers these two specs under the config file (SPEC §8) and names the
// object, field and value of a bad one; the caller keeps the last good configuration.

import type { KubeConfig } from '@kubernetes/client-node';
import { type InformerOptions, ResourceInformer, type ResourceSpec } from '../enrich/informers.ts';
import { calicoPaths } from '../enrich/k8s-kinds.ts';
import { type Logger, silentLogger } from '../enrich/source.ts';
import { SETTINGS } from './config.ts';

/** The spec fields of one FelixConfiguration that flowlogd reads, as they are (unvalidated). */
export interface FelixConfigurationSpec {
  readonly name: string;
  readonly spec: Readonly<Record<string, unknown>>;
}

/** The two FelixConfiguration layers in effect for a node; null where the object does not exist. */
export interface ClusterSettings {
  readonly default: FelixConfigurationSpec | null;
  readonly node: FelixConfigurationSpec | null;
}

export const NO_CLUSTER_SETTINGS: ClusterSettings = Object.freeze({ default: null, node: null });

/** Felix's own settings (FELIX_*): the ones a FelixConfiguration can carry. */
const FELIX_KEYS: ReadonlySet<string> = new Set(
  SETTINGS.filter((d) => d.env.startsWith('FELIX_')).map((d) => d.fileKey),
);

export const FELIX_CONFIGURATION_RESOURCE: ResourceSpec<FelixConfigurationSpec> = {
  name: 'felixconfigurations',
  kind: 'FelixConfiguration',
  paths: calicoPaths('felixconfigurations'),
  slim: (obj) => {
    const o = obj as { metadata?: { name?: unknown }; spec?: unknown };
    const name = typeof o.metadata?.name === 'string' ? o.metadata.name : null;
    if (name === null) return null;
    const spec: Record<string, unknown> = {};
    if (typeof o.spec === 'object' && o.spec !== null && !Array.isArray(o.spec)) {
      for (const [k, v] of Object.entries(o.spec)) if (FELIX_KEYS.has(k)) spec[k] = v;
    }
    return { name, spec: Object.freeze(spec) };
  },
};

export interface FelixConfigurationWatcherOptions {
  readonly logger?: Logger;
  /** Called when either layer changed (after the first sync). */
  readonly onChange?: (settings: ClusterSettings) => void;
  /** Longest wait in start() for the first list; default 10 s (then the settings without it; a later list applies live). */
  readonly syncTimeoutMs?: number;
  readonly informer?: Partial<Omit<InformerOptions, 'logger' | 'onChange' | 'onSynced'>>;
}

export class FelixConfigurationWatcher {
  readonly #nodeName: string;
  readonly #opts: FelixConfigurationWatcherOptions;
  readonly #informer: ResourceInformer<FelixConfigurationSpec>;
  #last = '';
  #started = false;
  #onSynced: (() => void) | null = null;

  constructor(kc: KubeConfig, nodeName: string, opts: FelixConfigurationWatcherOptions = {}) {
    this.#nodeName = nodeName;
    this.#opts = opts;
    this.#informer = new ResourceInformer(kc, FELIX_CONFIGURATION_RESOURCE, {
      ...opts.informer,
      logger: opts.logger ?? silentLogger,
      onChange: () => {
        if (this.#started) this.#changed();
      },
      onSynced: () => this.#onSynced?.(),
    });
  }

  get synced(): boolean {
    return this.#informer.synced;
  }

  /** Lists once (waiting at most syncTimeoutMs), then watches. */
  async start(): Promise<ClusterSettings> {
    const synced = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.#opts.syncTimeoutMs ?? 10_000);
      t.unref();
      this.#onSynced = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.#informer.start();
    await synced;
    this.#onSynced = null;
    this.#started = true;
    const s = this.settings();
    this.#last = JSON.stringify(s);
    return s;
  }

  settings(): ClusterSettings {
    let def: FelixConfigurationSpec | null = null;
    let node: FelixConfigurationSpec | null = null;
    const nodeObject = `node.${this.#nodeName}`;
    for (const fc of this.#informer.values()) {
      if (fc.name === 'default') def = fc;
      else if (fc.name === nodeObject) node = fc;
    }
    return { default: def, node };
  }

  #changed(): void {
    const s = this.settings();
    const text = JSON.stringify(s);
    if (text === this.#last) return; // another node's object, or fields flowlogd does not read
    this.#last = text;
    this.#opts.onChange?.(s);
  }

  stats() {
    return this.#informer.stats();
  }

  stop(): void {
    this.#informer.stop();
  }
}
