// Interface role: the host side of a pod's veth (a *workload* interface) or anything else
// (a *host* interface). It decides which side of a connection is the local endpoint.
// Names match globs by the addon's matcher (fnmatch), the one it attaches with.
import { loadNative } from '../datapath/native.ts';

export const DEFAULT_WORKLOAD_INTERFACES: readonly string[] = Object.freeze([
  'cali*', // Calico
  'veth*', // bridge CNIs, Flannel, kindnet, Docker (not their bridge, cni0/docker0: a pod's
  // traffic crosses both its veth and the bridge, and would be counted twice)
  'lxc*', // Cilium
  'azv*', // Azure CNI
  'gke*', // GKE
  'eni*', // AWS VPC CNI
]);

export type InterfaceRole = 'workload' | 'host';

export class InterfaceClassifier {
  readonly #globs: readonly string[];
  readonly #match = loadNative().matchInterface;
  readonly #cache = new Map<string, InterfaceRole>();

  constructor(workloadGlobs: readonly string[] = DEFAULT_WORKLOAD_INTERFACES) {
    this.#globs = [...workloadGlobs];
  }

  role(name: string): InterfaceRole {
    let r = this.#cache.get(name);
    if (r !== undefined) return r;
    r = this.#match(this.#globs, name) ? 'workload' : 'host';
    if (this.#cache.size >= 4096) this.#cache.clear(); // interface churn must not grow memory
    this.#cache.set(name, r);
    return r;
  }
}
