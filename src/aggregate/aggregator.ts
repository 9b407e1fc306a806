// Per-connection deltas from the datapath → Calico-format flow log records (SPEC §1–3).
//
// observe() is the hot path: one Map lookup and a few additions per update, no
// allocation for a known connection. Everything else (endpoint resolution, record keys,
// labels) happens at flush(), once per connection and cached across flushes.
//
// Records are derived from connections at every flush, so there is no per-record-key
// state to leak: a key exists in a flush exactly when some connection mapped to it was
// active in the interval (new, carried over while open, or completed in it).

import { type ConnectionUpdate, Hook, InitiatorHow, TcpFlag } from '../datapath/types.ts';
import type { Labels } from '../enrich/kube.ts';
import type { Endpoint, EndpointResolver, ServiceRef } from '../enrich/resolver.ts';
import { DEFAULT_WORKLOAD_INTERFACES, InterfaceClassifier } from './interfaces.ts';
import {
  type Action,
  type AggregationKind,
  type FlowLogRecord,
  type LabelsField,
  NO_POLICY_HITS,
  protoName,
} from './record.ts';

export type ResolverLike = Pick<EndpointResolver, 'resolve' | 'service' | 'isNodeIp' | 'version'>;

export interface AggregatorOptions {
  readonly nodeName: string;
  readonly resolver: ResolverLike;
  /** Start of the first interval (Unix ms). */
  readonly startTimeMs: number;
  readonly kindForAllowed?: AggregationKind;
  readonly kindForDenied?: AggregationKind;
  readonly enabledForAllowed?: boolean;
  readonly enabledForDenied?: boolean;
  readonly includeLabels?: boolean;
  readonly includePolicies?: boolean;
  readonly includeService?: boolean;
  /** FlowLogsEnableHostEndpoint: report the host's own connections seen on host interfaces. */
  readonly hostEndpoints?: boolean;
  /** Non-TCP connections end after this long without packets (FlowLogsIdleTimeout). */
  readonly idleTimeoutMs?: number;
  /** TCP connections without FIN/RST end after this long without packets (FlowLogsTcpIdleTimeout). */
  readonly tcpIdleTimeoutMs?: number;
  /** Globs of workload (pod veth host-side) interface names. */
  readonly workloadInterfaces?: readonly string[];
  /** Connection table bound; updates of new connections beyond it are dropped and counted. */
  readonly maxConnections?: number;
}

export type ReconfigurableOptions = Pick<
  AggregatorOptions,
  | 'kindForAllowed'
  | 'kindForDenied'
  | 'enabledForAllowed'
  | 'enabledForDenied'
  | 'includeLabels'
  | 'includePolicies'
  | 'includeService'
  | 'idleTimeoutMs'
  | 'tcpIdleTimeoutMs'
>;

export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;
export const DEFAULT_MAX_CONNECTIONS = 1_000_000;

export interface AggregatorStats {
  /** Updates passed to observe(). */
  updates: number;
  /** Open connections and closed ones kept one interval to absorb late packets. */
  connections: number;
  /** Updates for a disabled action (FlowLogsFileEnabledFor… false). */
  ignoredDisabled: number;
  /** Updates on host interfaces while host endpoints are off. */
  ignoredHostInterface: number;
  /** Updates on host interfaces for traffic that is not the host's own (forwarded pod traffic). */
  forwarded: number;
  /** Updates of new connections dropped because the table was full, and what they carried. */
  droppedTableFull: number;
  droppedPackets: number;
  droppedBytes: number;
  /** Connections that changed orientation on a surer initiator decision. */
  reoriented: number;
  flushes: number;
  records: number;
}

const OPEN = 0;
const CLOSED = 1; // completion reported; kept one interval for late packets (TCP only)

/** One (interface, connection, action), oriented client (initiator) → server. */
class Conn {
  proto: number;
  cIp: string;
  sIp: string;
  cPort: number;
  sPort: number;
  how: number;
  localIsClient: boolean;
  c2sP = 0;
  c2sB = 0;
  s2cP = 0;
  s2cB = 0;
  finC = false;
  finS = false;
  ended = false;
  state = OPEN;
  active = true;
  reported = false;
  firstSeenMs: number;
  lastSeenMs: number;
  // Cached resolution and record key.
  resolvedVersion = -1;
  srcEp: Endpoint | null = null;
  dstEp: Endpoint | null = null;
  svc: ServiceRef | null = null;
  keyStamp = -1;
  key = '';
  base: RecordBase | null = null;

  constructor(u: ConnectionUpdate, localIsInitiator: boolean) {
    this.proto = u.proto;
    this.cIp = u.srcIp;
    this.sIp = u.dstIp;
    this.cPort = u.srcPort;
    this.sPort = u.dstPort;
    this.how = u.initiatorHow;
    this.localIsClient = localIsInitiator;
    this.firstSeenMs = u.firstSeenMs;
    this.lastSeenMs = u.lastSeenMs;
  }

  restart(u: ConnectionUpdate): void {
    this.finC = false;
    this.finS = false;
    this.ended = false;
    this.state = OPEN;
    this.reported = false;
    this.firstSeenMs = u.firstSeenMs;
    this.resolvedVersion = -1;
    this.keyStamp = -1;
  }

  /** Swap client and server (a surer initiator decision disagreed). */
  swap(): void {
    let t: string | number | boolean = this.cIp;
    this.cIp = this.sIp;
    this.sIp = t;
    t = this.cPort;
    this.cPort = this.sPort;
    this.sPort = t;
    t = this.c2sP;
    this.c2sP = this.s2cP;
    this.s2cP = t;
    t = this.c2sB;
    this.c2sB = this.s2cB;
    this.s2cB = t;
    t = this.finC;
    this.finC = this.finS;
    this.finS = t;
    this.localIsClient = !this.localIsClient;
    this.resolvedVersion = -1;
    this.keyStamp = -1;
  }
}

/** The key fields of a record (everything but counters and labels). */
interface RecordBase {
  source_ip: string | null;
  source_name: string;
  source_name_aggr: string;
  source_namespace: string;
  source_port: number | null;
  source_type: string;
  dest_ip: string | null;
  dest_name: string;
  dest_name_aggr: string;
  dest_namespace: string;
  dest_port: number | null;
  dest_type: string;
  dest_service_namespace: string;
  dest_service_name: string;
  dest_service_port: string;
  dest_service_port_num: number | null;
  proto: string;
  action: Action;
  reporter: 'src' | 'dst';
}

class Group {
  base: RecordBase;
  srcLabels: Labels | null;
  dstLabels: Labels | null;
  numFlows = 0;
  started = 0;
  completed = 0;
  bytesIn = 0;
  bytesOut = 0;
  packetsIn = 0;
  packetsOut = 0;
  constructor(base: RecordBase, srcLabels: Labels | null, dstLabels: Labels | null) {
    this.base = base;
    this.srcLabels = srcLabels;
    this.dstLabels = dstLabels;
  }
}

const EMPTY_LABELS: Labels = Object.freeze({});

function intersect(a: Labels | null, b: Labels | null): Labels {
  if (a === null || b === null) return EMPTY_LABELS;
  const out: Record<string, string> = {};
  for (const k in a) if (b[k] === a[k]) out[k] = a[k]!;
  return out;
}

const sortedLabelsCache = new WeakMap<Labels, LabelsField>();
function labelsField(l: Labels | null): LabelsField {
  const key = l ?? EMPTY_LABELS;
  let f = sortedLabelsCache.get(key);
  if (f === undefined) {
    const list = Object.keys(key)
      .sort()
      .map((k) => `${k}=${key[k]}`);
    f = Object.freeze({ labels: Object.freeze(list) });
    sortedLabelsCache.set(key, f);
  }
  return f;
}

const labelsJsonCache = new WeakMap<Labels, string>();
function labelsJson(l: Labels | null): string {
  const key = l ?? EMPTY_LABELS;
  let j = labelsJsonCache.get(key);
  if (j === undefined) {
    j = JSON.stringify(labelsField(key));
    labelsJsonCache.set(key, j);
  }
  return j;
}

interface BaseJson {
  readonly src: string;
  readonly dst: string;
  readonly rest: string;
}
const baseJsonCache = new WeakMap<RecordBase, BaseJson>();
/** JSON fragments of a record's key fields, cached per record base (one per connection and kind). */
function baseJson(b: RecordBase): BaseJson {
  let j = baseJsonCache.get(b);
  if (j === undefined) {
    const s = JSON.stringify;
    j = {
      src:
        `"source_ip":${s(b.source_ip)},"source_name":${s(b.source_name)},"source_name_aggr":${s(b.source_name_aggr)},` +
        `"source_namespace":${s(b.source_namespace)},"source_port":${b.source_port},"source_type":${s(b.source_type)}`,
      dst:
        `"dest_ip":${s(b.dest_ip)},"dest_name":${s(b.dest_name)},"dest_name_aggr":${s(b.dest_name_aggr)},` +
        `"dest_namespace":${s(b.dest_namespace)},"dest_port":${b.dest_port},"dest_type":${s(b.dest_type)}`,
      rest:
        `"dest_service_namespace":${s(b.dest_service_namespace)},"dest_service_name":${s(b.dest_service_name)},` +
        `"dest_service_port":${s(b.dest_service_port)},"dest_service_port_num":${b.dest_service_port_num},` +
        `"proto":${s(b.proto)},"action":${s(b.action)},"reporter":${s(b.reporter)}`,
    };
    baseJsonCache.set(b, j);
  }
  return j;
}

function isIcmp(proto: number): boolean {
  return proto === 1 || proto === 58;
}

export class FlowAggregator {
  readonly #nodeName: string;
  readonly #resolver: ResolverLike;
  readonly #ifaces: InterfaceClassifier;
  readonly #hostEndpoints: boolean;
  readonly #maxConnections: number;
  #kind: [AggregationKind, AggregationKind];
  #enabled: [boolean, boolean];
  #includeLabels: boolean;
  #includePolicies: boolean;
  #includeService: boolean;
  #idleMs: number;
  #tcpIdleMs: number;
  /** Bumped when options change so cached record keys are rebuilt. */
  #optsVersion = 0;
  readonly #allow = new Map<string, Conn>();
  readonly #deny = new Map<string, Conn>();
  #intervalStartMs: number;
  readonly #stats: AggregatorStats = {
    updates: 0,
    connections: 0,
    ignoredDisabled: 0,
    ignoredHostInterface: 0,
    forwarded: 0,
    droppedTableFull: 0,
    droppedPackets: 0,
    droppedBytes: 0,
    reoriented: 0,
    flushes: 0,
    records: 0,
  };

  constructor(opts: AggregatorOptions) {
    this.#nodeName = opts.nodeName;
    this.#resolver = opts.resolver;
    this.#ifaces = new InterfaceClassifier(opts.workloadInterfaces ?? DEFAULT_WORKLOAD_INTERFACES);
    this.#hostEndpoints = opts.hostEndpoints ?? false;
    this.#maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#intervalStartMs = opts.startTimeMs;
    this.#kind = [opts.kindForAllowed ?? 2, opts.kindForDenied ?? 1];
    this.#enabled = [opts.enabledForAllowed ?? true, opts.enabledForDenied ?? true];
    this.#includeLabels = opts.includeLabels ?? true;
    this.#includePolicies = opts.includePolicies ?? true;
    this.#includeService = opts.includeService ?? true;
    this.#idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#tcpIdleMs = opts.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
  }

  /** Applies new settings (SIGHUP) from the next flush on; counts are kept. */
  reconfigure(o: ReconfigurableOptions): void {
    this.#kind = [o.kindForAllowed ?? this.#kind[0], o.kindForDenied ?? this.#kind[1]];
    this.#enabled = [o.enabledForAllowed ?? this.#enabled[0], o.enabledForDenied ?? this.#enabled[1]];
    this.#includeLabels = o.includeLabels ?? this.#includeLabels;
    this.#includePolicies = o.includePolicies ?? this.#includePolicies;
    this.#includeService = o.includeService ?? this.#includeService;
    this.#idleMs = o.idleTimeoutMs ?? this.#idleMs;
    this.#tcpIdleMs = o.tcpIdleTimeoutMs ?? this.#tcpIdleMs;
    this.#optsVersion++;
  }

  observe(u: ConnectionUpdate, action: Action = 'allow'): void {
    this.#stats.updates++;
    const deny = action === 'deny';
    if (!this.#enabled[deny ? 1 : 0]) {
      this.#stats.ignoredDisabled++;
      return;
    }
    const table = deny ? this.#deny : this.#allow;
    let c = table.get(u.key);
    if (c === undefined) {
      const created = this.#create(u, table.size);
      if (created === null) return;
      c = created;
      table.set(u.key, c);
    } else if (c.state === CLOSED && this.#isNewTcpOpen(u)) {
      c.restart(u); // the 5-tuple was reused for a new connection
    }

    let fwd = u.srcPort === c.cPort && u.srcIp === c.cIp;
    if (u.initiatorHow > c.how) {
      if (!fwd) {
        c.swap();
        this.#stats.reoriented++;
        fwd = true;
      }
      c.how = u.initiatorHow;
    }
    let cFlags: number;
    let sFlags: number;
    if (fwd) {
      c.c2sP += u.origPackets;
      c.c2sB += u.origBytes;
      c.s2cP += u.replyPackets;
      c.s2cB += u.replyBytes;
      cFlags = u.origTcpFlags;
      sFlags = u.replyTcpFlags;
    } else {
      c.c2sP += u.replyPackets;
      c.c2sB += u.replyBytes;
      c.s2cP += u.origPackets;
      c.s2cB += u.origBytes;
      cFlags = u.replyTcpFlags;
      sFlags = u.origTcpFlags;
    }
    if (u.lastSeenMs > c.lastSeenMs) c.lastSeenMs = u.lastSeenMs;
    c.active = true;
    if (c.proto === 6 && !c.ended) {
      if (((cFlags | sFlags) & TcpFlag.RST) !== 0) c.ended = true;
      else {
        if ((cFlags & TcpFlag.FIN) !== 0) c.finC = true;
        if ((sFlags & TcpFlag.FIN) !== 0) c.finS = true;
        if (c.finC && c.finS) c.ended = true;
      }
    }
  }

  #isNewTcpOpen(u: ConnectionUpdate): boolean {
    return (
      u.proto === 6 &&
      u.initiatorHow === InitiatorHow.syn &&
      (u.origTcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN
    );
  }

  #create(u: ConnectionUpdate, size: number): Conn | null {
    const workload = this.#ifaces.role(u.interfaceName) === 'workload';
    // Workload (pod veth, host side): ingress = sent by the pod. Host interface: egress = sent by the host.
    const senderIsLocal = workload === (u.firstHook === Hook.ingress);
    const localIsInitiator = senderIsLocal === u.firstFromInitiator;
    if (!workload) {
      if (!this.#hostEndpoints) {
        this.#stats.ignoredHostInterface++;
        return null;
      }
      if (!this.#resolver.isNodeIp(localIsInitiator ? u.srcIp : u.dstIp)) {
        this.#stats.forwarded++;
        return null;
      }
    }
    if (size >= this.#maxConnections) {
      this.#stats.droppedTableFull++;
      this.#stats.droppedPackets += u.origPackets + u.replyPackets;
      this.#stats.droppedBytes += u.origBytes + u.replyBytes;
      return null;
    }
    return new Conn(u, localIsInitiator);
  }

  /**
   * Closes the interval at `endTimeMs` and returns its records. Every connection active
   * in the interval is in exactly one record; counters restart at zero.
   */
  flush(endTimeMs: number): FlowLogRecord[] {
    const { groups, startS, endS } = this.#close(endTimeMs);
    const out: FlowLogRecord[] = new Array(groups.size);
    const policies = this.#includePolicies ? NO_POLICY_HITS : null;
    const labels = this.#includeLabels;
    const host = this.#nodeName;
    let i = 0;
    for (const g of groups.values()) {
      const b = g.base;
      out[i++] = {
        start_time: startS,
        end_time: endS,
        source_ip: b.source_ip,
        source_name: b.source_name,
        source_name_aggr: b.source_name_aggr,
        source_namespace: b.source_namespace,
        source_port: b.source_port,
        source_type: b.source_type,
        source_labels: labels ? labelsField(g.srcLabels) : null,
        dest_ip: b.dest_ip,
        dest_name: b.dest_name,
        dest_name_aggr: b.dest_name_aggr,
        dest_namespace: b.dest_namespace,
        dest_port: b.dest_port,
        dest_type: b.dest_type,
        dest_labels: labels ? labelsField(g.dstLabels) : null,
        dest_service_namespace: b.dest_service_namespace,
        dest_service_name: b.dest_service_name,
        dest_service_port: b.dest_service_port,
        dest_service_port_num: b.dest_service_port_num,
        proto: b.proto,
        action: b.action,
        reporter: b.reporter,
        policies,
        bytes_in: g.bytesIn,
        bytes_out: g.bytesOut,
        packets_in: g.packetsIn,
        packets_out: g.packetsOut,
        num_flows: g.numFlows,
        num_flows_started: g.started,
        num_flows_completed: g.completed,
        http_requests_allowed_in: 0,
        http_requests_denied_in: 0,
        original_source_ips: null,
        num_original_source_ips: 0,
        host,
        '@timestamp': endS * 1000,
      };
    }
    return out;
  }

  /**
   * Like flush(), but returns the JSON lines directly: the same records, byte for byte
   * what JSON.stringify(flush()[i]) gives, built from per-connection cached fragments
   * (the hot path to the sinks; no intermediate objects).
   */
  flushLines(endTimeMs: number): string[] {
    const { groups, startS, endS } = this.#close(endTimeMs);
    const out: string[] = new Array(groups.size);
    const head = `{"start_time":${startS},"end_time":${endS},`;
    const policies = this.#includePolicies ? JSON.stringify(NO_POLICY_HITS) : 'null';
    const tail =
      ',"http_requests_allowed_in":0,"http_requests_denied_in":0,"original_source_ips":null,' +
      `"num_original_source_ips":0,"host":${JSON.stringify(this.#nodeName)},"@timestamp":${endS * 1000}}`;
    const labels = this.#includeLabels;
    let i = 0;
    for (const g of groups.values()) {
      const j = baseJson(g.base);
      out[i++] =
        `${head}${j.src},"source_labels":${labels ? labelsJson(g.srcLabels) : 'null'},${j.dst},` +
        `"dest_labels":${labels ? labelsJson(g.dstLabels) : 'null'},${j.rest},"policies":${policies},` +
        `"bytes_in":${g.bytesIn},"bytes_out":${g.bytesOut},"packets_in":${g.packetsIn},"packets_out":${g.packetsOut},` +
        `"num_flows":${g.numFlows},"num_flows_started":${g.started},"num_flows_completed":${g.completed}${tail}`;
    }
    return out;
  }

  #close(endTimeMs: number): { groups: Map<string, Group>; startS: number; endS: number } {
    const startS = Math.floor(this.#intervalStartMs / 1000);
    let endS = Math.floor(endTimeMs / 1000);
    if (endS <= startS) endS = startS + 1; // end_time is never equal to start_time
    const groups = new Map<string, Group>();
    this.#collect(this.#allow, 0, endTimeMs, groups);
    this.#collect(this.#deny, 1, endTimeMs, groups);
    this.#intervalStartMs = endTimeMs;
    this.#stats.flushes++;
    this.#stats.records += groups.size;
    return { groups, startS, endS };
  }

  #collect(table: Map<string, Conn>, a: 0 | 1, endMs: number, groups: Map<string, Group>): void {
    const kind = this.#kind[a];
    const action: Action = a === 0 ? 'allow' : 'deny';
    const resolver = this.#resolver;
    const version = resolver.version;
    // Cached keys are valid for one (metadata version, options version, kind).
    const stamp = version * 1e6 + this.#optsVersion * 4 + kind;
    for (const [k, c] of table) {
      let completes = false;
      if (c.state === CLOSED) {
        // Late packets of a connection whose completion was already reported.
        if (!c.active) {
          table.delete(k);
          continue;
        }
      } else {
        if (!c.ended && c.lastSeenMs + (c.proto === 6 ? this.#tcpIdleMs : this.#idleMs) <= endMs)
          c.ended = true;
        completes = c.ended;
      }
      if (c.resolvedVersion !== version) {
        c.srcEp = resolver.resolve(c.cIp, c.firstSeenMs);
        c.dstEp = resolver.resolve(c.sIp, c.firstSeenMs);
        c.svc = resolver.service(c.sIp, c.sPort, c.proto);
        c.resolvedVersion = version;
      }
      if (c.keyStamp !== stamp) this.#buildKey(c, kind, action, stamp);
      let g = groups.get(c.key);
      if (g === undefined) {
        g = new Group(c.base!, c.srcEp!.labels, c.dstEp!.labels);
        groups.set(c.key, g);
      } else if (this.#includeLabels) {
        if (g.srcLabels !== c.srcEp!.labels) g.srcLabels = intersect(g.srcLabels, c.srcEp!.labels);
        if (g.dstLabels !== c.dstEp!.labels) g.dstLabels = intersect(g.dstLabels, c.dstEp!.labels);
      }
      g.numFlows++;
      if (!c.reported) g.started++;
      if (completes) g.completed++;
      if (c.localIsClient) {
        g.bytesIn += c.s2cB;
        g.packetsIn += c.s2cP;
        g.bytesOut += c.c2sB;
        g.packetsOut += c.c2sP;
      } else {
        g.bytesIn += c.c2sB;
        g.packetsIn += c.c2sP;
        g.bytesOut += c.s2cB;
        g.packetsOut += c.s2cP;
      }
      c.c2sB = c.c2sP = c.s2cB = c.s2cP = 0;
      c.active = false;
      c.reported = true;
      if (completes) {
        // TCP closed by FIN/RST stays one interval to absorb late packets (the last ACK);
        // idle-expired and non-TCP connections go now: a later packet is a new connection.
        if (c.proto === 6 && c.lastSeenMs + this.#tcpIdleMs > endMs) c.state = CLOSED;
        else table.delete(k);
      }
    }
  }

  #buildKey(c: Conn, kind: AggregationKind, action: Action, stamp: number): void {
    const s = c.srcEp!;
    const d = c.dstEp!;
    const svc = this.#includeService ? c.svc : null;
    const icmp = isIcmp(c.proto);
    const b: RecordBase = {
      source_ip: kind >= 2 ? null : c.cIp,
      source_name: kind >= 2 ? '-' : s.name,
      source_name_aggr: s.nameAggr,
      source_namespace: s.namespace,
      source_port: kind >= 1 || icmp ? null : c.cPort,
      source_type: s.type,
      dest_ip: kind >= 2 ? null : c.sIp,
      dest_name: kind >= 2 ? '-' : d.name,
      dest_name_aggr: d.nameAggr,
      dest_namespace: d.namespace,
      dest_port: kind >= 3 || icmp ? null : c.sPort,
      dest_type: d.type,
      dest_service_namespace: svc === null ? '-' : svc.namespace,
      dest_service_name: svc === null ? '-' : svc.name,
      dest_service_port: svc === null || kind >= 3 || svc.portName === '' ? '-' : svc.portName,
      dest_service_port_num: svc === null ? null : svc.port,
      proto: protoName(c.proto),
      action,
      reporter: c.localIsClient ? 'src' : 'dst',
    };
    // '\u0001' cannot occur in names, IPs or numbers: an unambiguous separator.
    c.key =
      `${action}\u0001${b.reporter}\u0001${b.proto}\u0001${b.source_type}\u0001${b.source_namespace}\u0001` +
      `${b.source_name_aggr}\u0001${b.source_name}\u0001${b.source_ip}\u0001${b.source_port}\u0001` +
      `${b.dest_type}\u0001${b.dest_namespace}\u0001${b.dest_name_aggr}\u0001${b.dest_name}\u0001` +
      `${b.dest_ip}\u0001${b.dest_port}\u0001${b.dest_service_namespace}\u0001${b.dest_service_name}\u0001` +
      `${b.dest_service_port}\u0001${b.dest_service_port_num}`;
    c.base = b;
    c.keyStamp = stamp;
  }

  stats(): AggregatorStats {
    this.#stats.connections = this.#allow.size + this.#deny.size;
    return { ...this.#stats };
  }
}
