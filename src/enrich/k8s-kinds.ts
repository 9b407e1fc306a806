// The resources flowlogd lists and watches, one entry per kind. Other consumers (the
// policy engine's NetworkPolicy kinds) add entries with their own slim form; the
// ClusterRole in deploy/ grants get/list/watch on exactly these (a unit test checks).

import type { ResourceSpec } from './informers.ts';
import { convertObject, type Labels, type SlimObject } from './kube.ts';

/** Calico's CRDs as every Calico cluster has them, then the aggregated v3 API (calico-apiserver). */
export function calicoPaths(plural: string): string[] {
  return [`/apis/crd.projectcalico.org/v1/${plural}`, `/apis/projectcalico.org/v3/${plural}`];
}

/*
 * What many objects repeat is kept once. JSON.parse makes a new string for every
 * occurrence and a new labels object for every pod, while the pods of a ReplicaSet share
 * their labels, namespace, node names and generateName: at 50,000 pods that was ~12 MB of
 * copies (BENCHMARKS.md, Kubernetes API source).
 */

/** One frozen labels object per distinct label set, held weakly (collected with its last user). */
const labelSets = new Map<string, WeakRef<Labels>>();
const forgetLabels = new FinalizationRegistry<string>((key) => {
  if (labelSets.get(key)?.deref() === undefined) labelSets.delete(key);
});

export function internLabels(labels: Labels): Labels {
  const keys = Object.keys(labels).sort();
  let key = '';
  for (const k of keys) key += `${k}\u0000${labels[k]}\u0000`;
  const known = labelSets.get(key)?.deref();
  if (known !== undefined) return known;
  labelSets.set(key, new WeakRef(labels));
  forgetLabels.register(labels, key);
  return labels;
}

/** Namespace, node and generateName strings, once each; emptied past 100,000 (a bound, not a cache policy). */
const strings = new Map<string, string>();
function internString<T extends string | null>(v: T): T {
  if (v === null) return v;
  const known = strings.get(v);
  if (known !== undefined) return known as T;
  if (strings.size >= 100_000) strings.clear();
  strings.set(v, v);
  return v;
}

function shared(m: SlimObject): SlimObject {
  switch (m.kind) {
    case 'Pod': {
      const p = m.meta;
      return {
        kind: 'Pod',
        meta: {
          ...p,
          namespace: internString(p.namespace),
          generateName: internString(p.generateName),
          nodeName: internString(p.nodeName),
          labels: internLabels(p.labels),
        },
      };
    }
    case 'Service':
      return { kind: 'Service', meta: { ...m.meta, namespace: internString(m.meta.namespace) } };
    case 'Node':
    case 'Namespace':
      return { kind: m.kind, meta: { ...m.meta, labels: internLabels(m.meta.labels) } } as SlimObject;
    default:
      return m;
  }
}

function metadataKind(name: string, kind: string, paths: string[]): ResourceSpec<SlimObject> {
  return {
    name,
    kind,
    paths,
    slim: (obj, where, warnings) => {
      const m = convertObject(kind, obj, where, warnings);
      return m === null ? null : shared(m);
    },
  };
}

/**
 * Everything the endpoint resolver reads (ClusterMetadata). A daemon reading the API
 * lists POLICY_RESOURCES (below) beside these, so the policy stage gets the same
 * snapshot's policies: `resources: [...METADATA_RESOURCES, ...POLICY_RESOURCES]`.
 */
export const METADATA_RESOURCES: readonly ResourceSpec<SlimObject>[] = [
  metadataKind('pods', 'Pod', ['/api/v1/pods']),
  metadataKind('services', 'Service', ['/api/v1/services']),
  metadataKind('namespaces', 'Namespace', ['/api/v1/namespaces']),
  metadataKind('nodes', 'Node', ['/api/v1/nodes']),
  metadataKind('networksets', 'NetworkSet', calicoPaths('networksets')),
  metadataKind('globalnetworksets', 'GlobalNetworkSet', calicoPaths('globalnetworksets')),
];

/**
 * A policy kind (src/policy compiles it). API list items carry no apiVersion, and a
 * Calico NetworkPolicy shares its kind with Kubernetes', so the entry sets it.
 */
function policyKind(
  name: string,
  kind: string,
  apiVersion: string,
  paths: string[],
): ResourceSpec<SlimObject> {
  return {
    name,
    kind,
    paths,
    slim: (obj, where, warnings) =>
      convertObject(
        kind,
        typeof obj === 'object' && obj !== null ? { ...obj, apiVersion } : obj,
        where,
        warnings,
      ),
  };
}

const CALICO = 'projectcalico.org/v3';

/** What the policy stage reads: NetworkPolicy kinds, Tiers, ServiceAccounts (for serviceAccountSelector) and EndpointSlices (for `services`). */
export const POLICY_RESOURCES: readonly ResourceSpec<SlimObject>[] = [
  policyKind('networkpolicies', 'NetworkPolicy', 'networking.k8s.io/v1', [
    '/apis/networking.k8s.io/v1/networkpolicies',
  ]),
  policyKind('calico-networkpolicies', 'NetworkPolicy', CALICO, calicoPaths('networkpolicies')),
  policyKind('globalnetworkpolicies', 'GlobalNetworkPolicy', CALICO, calicoPaths('globalnetworkpolicies')),
  policyKind('stagednetworkpolicies', 'StagedNetworkPolicy', CALICO, calicoPaths('stagednetworkpolicies')),
  policyKind(
    'stagedglobalnetworkpolicies',
    'StagedGlobalNetworkPolicy',
    CALICO,
    calicoPaths('stagedglobalnetworkpolicies'),
  ),
  policyKind(
    'stagedkubernetesnetworkpolicies',
    'StagedKubernetesNetworkPolicy',
    CALICO,
    calicoPaths('stagedkubernetesnetworkpolicies'),
  ),
  policyKind('tiers', 'Tier', CALICO, calicoPaths('tiers')),
  policyKind('serviceaccounts', 'ServiceAccount', 'v1', ['/api/v1/serviceaccounts']),
  // The addresses and ports behind a Service, for rules' `services` matches.
  policyKind('endpointslices', 'EndpointSlice', 'discovery.k8s.io/v1', [
    '/apis/discovery.k8s.io/v1/endpointslices',
  ]),
];

/**
 * What `flowlogd run` lists and watches: the resolver's metadata and the policy engine's
 * kinds (one snapshot updates both). deploy/clusterrole.yaml grants get/list/watch on
 * exactly these and FelixConfiguration (test/unit/deploy checks).
 */
export const DAEMON_RESOURCES: readonly ResourceSpec<SlimObject>[] = [
  ...METADATA_RESOURCES,
  ...POLICY_RESOURCES,
];
