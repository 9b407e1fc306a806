// The resources flowlogd lists and watches, one entry per kind. Other consumers (the
// policy engine's NetworkPolicy kinds) add entries with their own slim form; the
// ClusterRole in deploy/ grants get/list/watch on exactly these (a unit test checks).

import type { ResourceSpec } from './informers.ts';
import { convertObject, type SlimObject } from './kube.ts';

/** Calico's CRDs as every Calico cluster has them, then the aggregated v3 API (calico-apiserver). */
export function calicoPaths(plural: string): string[] {
  return [`/apis/crd.projectcalico.org/v1/${plural}`, `/apis/projectcalico.org/v3/${plural}`];
}

function metadataKind(name: string, kind: string, paths: string[]): ResourceSpec<SlimObject> {
  return {
    name,
    kind,
    paths,
    slim: (obj, where, warnings) => convertObject(kind, obj, where, warnings),
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

/** What the policy stage reads: NetworkPolicy kinds, Tiers and ServiceAccounts (for serviceAccountSelector). */
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
