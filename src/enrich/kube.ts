// Parsing of Kubernetes object lists (as `kubectl get pods,services,namespaces,nodes -A
// -o yaml|json` prints them, multi-document YAML, or a bare array) into the plain
// metadata the resolver needs. Validation happens here, in TypeScript: objects that lack
// what we need are skipped and reported as warnings; only an unreadable document throws.

import { canonicalIp, parseCidr } from './ip.ts';
import { DOC_REDO, DOC_START, YamlError, yamlValues } from './yaml-items.ts';

export type Labels = Readonly<Record<string, string>>;

/** A container port a pod declares; NetworkPolicy named ports resolve against these. */
export interface ContainerPortMeta {
  readonly name: string;
  readonly port: number;
  /** 'TCP' | 'UDP' | 'SCTP' */
  readonly protocol: string;
}

export interface PodMeta {
  readonly name: string;
  readonly namespace: string;
  readonly generateName: string | null;
  readonly labels: Labels;
  /** Canonical IP strings (v4 and v6). Empty for hostNetwork pods (they use the node's IPs). */
  readonly ips: readonly string[];
  readonly nodeName: string | null;
  readonly hostNetwork: boolean;
  /** Named container ports (unnamed ones cannot be referenced by a policy). */
  readonly containerPorts?: readonly ContainerPortMeta[];
  readonly serviceAccount?: string | null;
}

export interface ServicePortMeta {
  readonly name: string;
  readonly port: number;
  /** 'TCP' | 'UDP' | 'SCTP' */
  readonly protocol: string;
  readonly targetPort: number | string | null;
}

export interface ServiceMeta {
  readonly name: string;
  readonly namespace: string;
  readonly clusterIps: readonly string[];
  readonly ports: readonly ServicePortMeta[];
}

export interface NodeMeta {
  readonly name: string;
  readonly labels: Labels;
  readonly ips: readonly string[];
}

export interface NamespaceMeta {
  readonly name: string;
  readonly labels: Labels;
}

export interface NetworkSetMeta {
  readonly name: string;
  /** null for a GlobalNetworkSet. */
  readonly namespace: string | null;
  readonly labels: Labels;
  /** Canonical CIDR strings. */
  readonly nets: readonly string[];
}

export interface ClusterMetadata {
  readonly pods: readonly PodMeta[];
  readonly services: readonly ServiceMeta[];
  readonly nodes: readonly NodeMeta[];
  readonly namespaces: readonly NamespaceMeta[];
  readonly networkSets: readonly NetworkSetMeta[];
  /** Policy kinds, Tiers and ServiceAccounts, as read: src/policy compiles and validates them. */
  readonly policyObjects?: readonly object[];
}

/** Kinds handed to the policy stage untouched (a Calico NetworkPolicy shares its kind with Kubernetes'). */
export const POLICY_OBJECT_KINDS: ReadonlySet<string> = new Set([
  'NetworkPolicy',
  'GlobalNetworkPolicy',
  'StagedNetworkPolicy',
  'StagedGlobalNetworkPolicy',
  'StagedKubernetesNetworkPolicy',
  'Tier',
  'ServiceAccount',
  'EndpointSlice',
]);

export interface ParseResult {
  readonly metadata: ClusterMetadata;
  /** Objects skipped or fields ignored, one human-readable line each. */
  readonly warnings: readonly string[];
}

export const EMPTY_METADATA: ClusterMetadata = Object.freeze({
  pods: [],
  services: [],
  nodes: [],
  namespaces: [],
  networkSets: [],
});

/** Every way a metadata file can be unreadable ends here, with the file's path first. */
export class MetadataParseError extends Error {
  override name = 'MetadataParseError';
  readonly path: string;
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super(`${path}: ${detail}`, options);
    this.path = path;
  }
}

/** Lists inside lists deeper than this are not Kubernetes output. */
const MAX_LIST_NESTING = 16;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function labelsOf(v: unknown): Labels {
  if (!isObj(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return Object.freeze(out);
}

function ipsOf(values: unknown[], where: string, warnings: string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    if (typeof v !== 'string' || v === '' || v === 'None') continue;
    const c = canonicalIp(v);
    if (c === null) warnings.push(`${where}: ignoring invalid IP ${JSON.stringify(v)}`);
    else if (!out.includes(c)) out.push(c);
  }
  return out;
}

/**
 * Flattens the accepted document shapes into a list of objects. Iterative, with a depth
 * limit and a check for cycles (a YAML anchor can make a list contain itself), so no
 * input can overflow the stack.
 */
function itemsOf(doc: unknown, out: Obj[], source: string): void {
  const stack: { list: readonly unknown[]; next: number }[] = [{ list: [doc], next: 0 }];
  const open = new Set<readonly unknown[]>();
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.next >= top.list.length) {
      open.delete(top.list);
      stack.pop();
      continue;
    }
    const d = top.list[top.next++];
    let inner: unknown[] | null = null;
    if (Array.isArray(d)) inner = d;
    else if (isObj(d)) {
      const kind = d.kind;
      if (
        Array.isArray(d.items) &&
        (kind === undefined || (typeof kind === 'string' && kind.endsWith('List')))
      )
        inner = d.items;
      else out.push(d);
    }
    if (inner === null) continue;
    if (open.has(inner)) throw new MetadataParseError(source, 'a list contains itself (YAML alias cycle)');
    if (stack.length > MAX_LIST_NESTING)
      throw new MetadataParseError(source, `lists nested deeper than ${MAX_LIST_NESTING}`);
    open.add(inner);
    stack.push({ list: inner, next: 0 });
  }
}

/** What a library error means to the person who wrote the file. */
function describe(err: Error): string {
  if (err instanceof RangeError && /call stack/i.test(err.message)) return 'nested too deeply to parse';
  return `${err.name}: ${err.message}`;
}

/** One object's slim form, tagged by the list of ClusterMetadata it belongs to. */
export type SlimObject =
  | { readonly kind: 'Pod'; readonly meta: PodMeta }
  | { readonly kind: 'Service'; readonly meta: ServiceMeta }
  | { readonly kind: 'Node'; readonly meta: NodeMeta }
  | { readonly kind: 'Namespace'; readonly meta: NamespaceMeta }
  | { readonly kind: 'NetworkSet'; readonly meta: NetworkSetMeta }
  | { readonly kind: 'Policy'; readonly meta: object };

function containerPortsOf(spec: Obj): ContainerPortMeta[] {
  const out: ContainerPortMeta[] = [];
  for (const list of [spec.containers, spec.initContainers]) {
    if (!Array.isArray(list)) continue;
    for (const c of list) {
      if (!isObj(c) || !Array.isArray(c.ports)) continue;
      for (const p of c.ports) {
        if (!isObj(p) || typeof p.name !== 'string' || p.name === '' || typeof p.containerPort !== 'number')
          continue;
        const protocol = typeof p.protocol === 'string' ? p.protocol.toUpperCase() : 'TCP';
        out.push({ name: p.name, port: p.containerPort, protocol });
      }
    }
  }
  return out;
}

/**
 * Keeps only what the resolver reads of one Kubernetes object of `kind` (given by the
 * caller: items of an API list carry no kind). Shared by the file and the API sources so
 * both produce the same slim form. null for a kind the resolver does not use or an
 * object without metadata.name; field problems are pushed to `warnings`, naming `where`.
 */
export function convertObject(
  kind: string,
  item: unknown,
  where: string,
  warnings: string[],
): SlimObject | null {
  if (!isObj(item)) return null;
  const md = isObj(item.metadata) ? item.metadata : {};
  const name = str(md.name);
  if (name === null) return null;
  const spec = isObj(item.spec) ? item.spec : {};
  const status = isObj(item.status) ? item.status : {};
  const labels = labelsOf(md.labels);
  switch (kind) {
    case 'Pod': {
      const hostNetwork = spec.hostNetwork === true;
      // A finished pod (a Job's) keeps status.podIP after the IP went to another pod.
      const finished = status.phase === 'Succeeded' || status.phase === 'Failed';
      const raw: unknown[] = [];
      if (Array.isArray(status.podIPs)) for (const p of status.podIPs) if (isObj(p)) raw.push(p.ip);
      raw.push(status.podIP);
      const meta: PodMeta = {
        name,
        namespace: str(md.namespace) ?? 'default',
        generateName: str(md.generateName),
        labels,
        ips: hostNetwork || finished ? [] : ipsOf(raw, where, warnings),
        nodeName: str(spec.nodeName),
        hostNetwork,
        containerPorts: containerPortsOf(spec),
        serviceAccount: str(spec.serviceAccountName) ?? str(spec.serviceAccount) ?? 'default',
      };
      return { kind, meta };
    }
    case 'Service': {
      const raw: unknown[] = Array.isArray(spec.clusterIPs) ? [...spec.clusterIPs] : [];
      raw.push(spec.clusterIP);
      const ports: ServicePortMeta[] = [];
      if (Array.isArray(spec.ports)) {
        for (const p of spec.ports) {
          if (!isObj(p) || typeof p.port !== 'number' || !Number.isInteger(p.port)) continue;
          const tp = p.targetPort;
          ports.push({
            name: typeof p.name === 'string' ? p.name : '',
            port: p.port,
            protocol: typeof p.protocol === 'string' ? p.protocol.toUpperCase() : 'TCP',
            targetPort: typeof tp === 'number' || typeof tp === 'string' ? tp : null,
          });
        }
      }
      const meta: ServiceMeta = {
        name,
        namespace: str(md.namespace) ?? 'default',
        clusterIps: ipsOf(raw, where, warnings),
        ports,
      };
      return { kind, meta };
    }
    case 'Node': {
      const raw: unknown[] = [];
      if (Array.isArray(status.addresses)) {
        for (const a of status.addresses) {
          if (isObj(a) && (a.type === 'InternalIP' || a.type === 'ExternalIP')) raw.push(a.address);
        }
      }
      return { kind, meta: { name, labels, ips: ipsOf(raw, where, warnings) } };
    }
    case 'Namespace':
      return { kind, meta: { name, labels } };
    case 'NetworkSet':
    case 'GlobalNetworkSet': {
      const nets: string[] = [];
      if (Array.isArray(spec.nets)) {
        for (const n of spec.nets) {
          const c = typeof n === 'string' ? parseCidr(n) : null;
          if (c === null) warnings.push(`${where}: ignoring invalid CIDR ${JSON.stringify(n)}`);
          else nets.push(n as string);
        }
      }
      const meta: NetworkSetMeta = {
        name,
        namespace: kind === 'NetworkSet' ? (str(md.namespace) ?? 'default') : null,
        labels,
        nets,
      };
      return { kind: 'NetworkSet', meta };
    }
    case 'EndpointSlice': {
      // For policies' `services` matches (Felix's service index reads the same): the
      // owning Service (label kubernetes.io/service-name), every endpoint's addresses
      // (ready or not, as Felix), and the ports with a number; nothing else is kept.
      const addresses: string[] = [];
      const fqdn = item.addressType === 'FQDN';
      if (!fqdn && Array.isArray(item.endpoints))
        for (const e of item.endpoints)
          if (isObj(e) && Array.isArray(e.addresses))
            for (const a of ipsOf(e.addresses, where, warnings))
              if (!addresses.includes(a)) addresses.push(a);
      const ports: { port: number; protocol: string }[] = [];
      if (Array.isArray(item.ports))
        for (const p of item.ports)
          if (isObj(p) && typeof p.port === 'number')
            ports.push({ port: p.port, protocol: typeof p.protocol === 'string' ? p.protocol : 'TCP' });
      return {
        kind: 'Policy',
        meta: {
          apiVersion: 'discovery.k8s.io/v1',
          kind,
          metadata: { name, namespace: md.namespace, labels },
          spec: { addresses, ports },
        },
      };
    }
    default:
      // The policy stage validates its kinds itself; the object keeps its kind (API list
      // items carry none) and apiVersion (Calico's NetworkPolicy shares Kubernetes' kind).
      if (!POLICY_OBJECT_KINDS.has(kind)) return null;
      // Only what policies are made of: an API object's managedFields and status stay out.
      return {
        kind: 'Policy',
        meta: {
          apiVersion: item.apiVersion,
          kind,
          metadata: { name, namespace: md.namespace, labels },
          spec: item.spec,
        },
      };
  }
}

/**
 * Parses a metadata file's text. Throws only MetadataParseError (naming `source`): the
 * YAML and JSON parsers throw RangeError on deep nesting and ReferenceError on aliases.
 */
export function parseClusterMetadata(text: string, source = 'metadata'): ParseResult {
  try {
    return parseUnchecked(text, source);
  } catch (err) {
    if (err instanceof MetadataParseError) throw err;
    throw new MetadataParseError(source, describe(err as Error), { cause: err });
  }
}

function parseUnchecked(text: string, source: string): ParseResult {
  // Each top-level value is cut down to slim objects as soon as it is read, so a large
  // List is never held whole (yaml-items.ts reads a YAML List an item run at a time).
  const warnings: string[] = [];
  const objects: SlimObject[] = [];
  let index = 0;
  const take = (value: unknown): void => {
    const items: Obj[] = [];
    itemsOf(value, items, source);
    for (const item of items) {
      const kind = str(item.kind);
      const md = isObj(item.metadata) ? item.metadata : {};
      const name = str(md.name);
      const where = `${source}: item ${index++} (${kind ?? 'no kind'} ${name ?? 'unnamed'})`;
      if (kind === null || name === null) {
        warnings.push(`${where}: skipped, needs kind and metadata.name`);
        continue;
      }
      const m = convertObject(kind, item, where, warnings);
      if (m !== null) objects.push(m); // other kinds (Endpoints, Deployments, …) are not needed
    }
  };
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new MetadataParseError(source, `invalid JSON: ${(err as Error).message}`);
    }
    take(doc);
  } else {
    let mark = { objects: 0, warnings: 0, index: 0 };
    try {
      for (const v of yamlValues(text)) {
        if (v === DOC_START) mark = { objects: objects.length, warnings: warnings.length, index };
        else if (v === DOC_REDO) {
          objects.length = mark.objects;
          warnings.length = mark.warnings;
          index = mark.index;
        } else take(v);
      }
    } catch (err) {
      if (err instanceof YamlError) throw new MetadataParseError(source, `invalid YAML: ${err.message}`);
      throw err;
    }
  }
  return { metadata: collectMetadata(objects), warnings };
}

/** Sorts slim objects into the lists of one ClusterMetadata snapshot. */
export function collectMetadata(objects: Iterable<SlimObject>): ClusterMetadata {
  const pods: PodMeta[] = [];
  const services: ServiceMeta[] = [];
  const nodes: NodeMeta[] = [];
  const namespaces: NamespaceMeta[] = [];
  const networkSets: NetworkSetMeta[] = [];
  const policyObjects: object[] = [];
  for (const m of objects) {
    switch (m.kind) {
      case 'Pod':
        pods.push(m.meta);
        break;
      case 'Service':
        services.push(m.meta);
        break;
      case 'Node':
        nodes.push(m.meta);
        break;
      case 'Namespace':
        namespaces.push(m.meta);
        break;
      case 'NetworkSet':
        networkSets.push(m.meta);
        break;
      case 'Policy':
        policyObjects.push(m.meta);
        break;
    }
  }
  return { pods, services, nodes, namespaces, networkSets, policyObjects };
}
