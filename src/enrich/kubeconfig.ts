// Which Kubernetes API flowlogd talks to, chosen the way kubectl chooses: `--kubeconfig
// FILE`, else `$KUBECONFIG` (a list of files, merged), else `~/.kube/config`, else the
// pod's service account (in-cluster: token and CA under
// /var/run/secrets/kubernetes.io/serviceaccount, `KUBERNETES_SERVICE_HOST`). Unlike
// kubectl there is no fallback to localhost:8080: with none of these flowlogd has no
// cluster (host mode, or `--metadata FILE`).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export type KubeConfigChoice =
  | { readonly how: 'flag' | 'KUBECONFIG' | 'home'; readonly path: string }
  | { readonly how: 'in-cluster'; readonly path: string };

export interface ChooseInput {
  /** --kubeconfig */
  readonly file?: string | null;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly exists?: (path: string) => boolean;
}

export function chooseKubeConfig(input: ChooseInput = {}): KubeConfigChoice | null {
  const env = input.env ?? process.env;
  const exists = input.exists ?? existsSync;
  if (input.file) return { how: 'flag', path: input.file };
  if (env.KUBECONFIG) return { how: 'KUBECONFIG', path: env.KUBECONFIG };
  const home = env.HOME;
  if (home) {
    const p = join(home, '.kube', 'config');
    if (exists(p)) return { how: 'home', path: p };
  }
  if (env.KUBERNETES_SERVICE_HOST && exists(SERVICE_ACCOUNT_TOKEN)) {
    return { how: 'in-cluster', path: SERVICE_ACCOUNT_TOKEN };
  }
  return null;
}

/**
 * Loads the chosen configuration (token, client certificate, exec plugin, http or https).
 * The client library is imported here, only once a cluster was chosen: it is ~900 modules
 * and tens of MiB resident that a daemon without a cluster never uses (BENCHMARKS.md).
 */
export async function loadKubeConfig(choice: KubeConfigChoice): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (choice.how === 'flag') kc.loadFromFile(choice.path);
  else kc.loadFromDefault(); // the same order as chooseKubeConfig, on process.env
  if (kc.getCurrentCluster() === null) {
    throw new Error(`kubeconfig ${choice.path}: no current context or cluster`);
  }
  return kc;
}
