// Per-connection deltas from the datapath → Calico-format flow log records (SPEC §1–3).
//
// observe() is the hot path: one Map lookup and a few additions per update, no
// allocation for a known connection (connections.ts). Endpoint resolution, record keys
// and labels happen off it: prepareKeys() builds the keys of new connections between
// flushes (the daemon calls it every 250 ms), and a flush builds those still missing or
// gone stale (metadata reloaded, settings changed, conntrack joined). Keys are kept
// across flushes while connections use them, except at kind 0, where every connection
// is its own key and the flush rebuilds them each time (#dropKindZeroKeys).
//
// Records are derived from connections at every flush, so there is no per-record-key
// state to leak: a key exists in a flush exactly when some connection mapped to it was
// active in the interval (new, carried over while open, or completed in it).

import {
  type ConnectionUpdate,
  type ConntrackEvent,
  Hook,
  InitiatorHow,
  TcpFlag,
} from '../datapath/types.ts';
import type { PolicyStage } from '../policy/stage.ts';
import type { Trace } from '../policy/trace.ts';
import { Conn, ConnNumbers, forget } from './connections.ts';
import { ConntrackJoin } from './conntrack.ts';
import { DenyLedger, payDebt } from './deny-ledger.ts';
import { DEFAULT_WORKLOAD_INTERFACES, InterfaceClassifier } from './interfaces.ts';
import { type Group, intersectLabels, KeyInterner } from './keys.ts';
import {
  BYTES_IN,
  BYTES_OUT,
  COMPLETED,
  type FlushRecords,
  LineWriter,
  NUM_FLOWS,
  PACKETS_IN,
  PACKETS_OUT,
  STARTED,
  SUMS,
} from './lines.ts';
import {
  type AggregatorOptions,
  type AggregatorStats,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_TCP_IDLE_TIMEOUT_MS,
  type LifecycleSource,
  type ReconfigurableOptions,
  type ResolverLike,
  zeroStats,
} from './options.ts';
import { NET_OVERFLOW, NET_UNKNOWN_LOCAL, OverflowRecords } from './overflow.ts';
import type { Action, AggregationKind, FlowLogRecord } from './record.ts';
import { checkVerdict, traceOf } from './verdict.ts';

const NO_SUMS = new Float64Array(0);

export class FlowAggregator {
  readonly #nodeName: string;
  readonly #resolver: ResolverLike;
  readonly #policy: PolicyStage | null;
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
  /** Bumped when the metadata or the policies change (#keyStamp). */
  #metadataGeneration = 0;
  #seenResolverVersion = -1;
  #seenPolicyVersion = -1;
  readonly #stats: AggregatorStats = zeroStats();
  readonly #nums = new ConnNumbers();
  readonly #allow = new Map<string, Conn>();
  readonly #deny = new Map<string, Conn>();
  readonly #ct: ConntrackJoin;
  readonly #ledger = new DenyLedger(this.#stats);
  readonly #keys = new KeyInterner();
  readonly #lines = new LineWriter();
  /** Connections created since the last flush, for prepareKeys() (from #unkeyedHead on). */
  #unkeyed: Conn[] = [];
  #unkeyedHead = 0;
  /** IPs seen behind this node's workload interfaces (pods here), with when last seen. */
  readonly #localPods = new Map<string, number>();
  readonly #overflow: OverflowRecords;
  readonly #onLifecycle: ((source: LifecycleSource) => void) | undefined;
  /** The record counters of the flush being collected (SUMS per record, at Group.at; zeroed). */
  #sums = NO_SUMS;
  /** Number of the flush in progress (stamps the groups it fills). */
  #flushNo = 0;
  #intervalStartMs: number;

  constructor(opts: AggregatorOptions) {
    this.#nodeName = opts.nodeName;
    this.#resolver = opts.resolver;
    this.#policy = opts.policy ?? null;
    this.#ct = new ConntrackJoin(this.#stats, opts.resolver);
    this.#ifaces = new InterfaceClassifier(opts.workloadInterfaces ?? DEFAULT_WORKLOAD_INTERFACES);
    this.#hostEndpoints = opts.hostEndpoints ?? false;
    this.#overflow = new OverflowRecords(this.#stats, this.#ifaces, this.#hostEndpoints);
    this.#maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#intervalStartMs = opts.startTimeMs;
    this.#kind = [opts.kindForAllowed ?? 2, opts.kindForDenied ?? 1];
    this.#enabled = [opts.enabledForAllowed ?? true, opts.enabledForDenied ?? true];
    this.#includeLabels = opts.includeLabels ?? true;
    this.#includePolicies = opts.includePolicies ?? true;
    this.#includeService = opts.includeService ?? true;
    this.#idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#tcpIdleMs = opts.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    this.#onLifecycle = opts.onLifecycleSource;
    this.#onLifecycle?.('tcp-flags+idle');
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

  stats(): AggregatorStats {
    this.#stats.connections = this.#allow.size + this.#deny.size;
    this.#stats.connectionSlots = this.#nums.slots;
    return { ...this.#stats };
  }

  /**
   * One datapath update. The action defaults from the update: packets the kernel dropped
   * by policy (`dropReason` set) are `deny` and are taken off the allow side, where TC
   * had counted them before the drop.
   */
  observe(u: ConnectionUpdate, action?: Action): void {
    this.#stats.updates++;
    if (u.overflow === true) {
      this.#overflow.observe(u, this.#allow, this.#nums, this.#unkeyed);
      return;
    }
    const deny = (action ?? (u.dropReason ? 'deny' : 'allow')) === 'deny';
    if (deny && u.dropReason) this.#ledger.moveDenied(u, this.#allow);
    if (!this.#enabled[deny ? 1 : 0]) {
      this.#stats.ignoredDisabled++;
      return;
    }
    const table = deny ? this.#deny : this.#allow;
    let c = table.get(u.key);
    if (c === undefined) {
      const created = this.#create(u, table.size, deny);
      if (created === null) return;
      c = created;
      table.set(u.key, c);
      c.denySide = deny;
      if (u.replayed === true) c.replayed = true;
      this.#unkeyed.push(c);
      if (deny) {
        c.dropReason = u.dropReasonName ?? '';
        // Orient like the allowed side when there is one (drops know no initiator).
        const a = this.#allow.get(u.key);
        if (a !== undefined && a.cIp !== c.cIp) c.swap();
        if (a !== undefined) c.how = a.how;
      }
      if (!deny) {
        this.#ledger.takeEarly(c, u.key);
        // TCP first seen without its opening (no SYN or SYN+ACK in its first update) began
        // before flowlogd saw it: open when flowlogd (re)started, or idle past a forget.
        // Carried in (num_flows 1), not started in this interval (SPEC §3).
        if (u.proto === 6 && u.initiatorHow !== InitiatorHow.syn) c.reported = true;
      }
      this.#ct.joinNew(c, u);
    } else if (c.closed && isNewTcpOpen(u)) {
      c.restart(u); // the 5-tuple was reused for a new connection
      this.#ct.rejoin(c, u);
    }

    // Same orientation as the connection? The key's side says so without formatting an
    // address; hand-built updates without it compare addresses.
    const sideA = u.initiatorIsSideA;
    let fwd =
      sideA !== undefined && c.clientIsA !== undefined
        ? sideA === c.clientIsA
        : u.srcPort === c.cPort && u.srcIp === c.cIp;
    if (u.initiatorHow > c.how) {
      if (!fwd) {
        c.swap();
        this.#stats.reoriented++;
        fwd = true;
      }
      c.how = u.initiatorHow;
    }
    c.add(u, fwd);
    if (!deny) {
      c.netP += u.origPackets + u.replyPackets;
      if (c.denied) payDebt(c);
    }
  }

  /**
   * One conntrack event or dumped entry (see ConntrackJoin.observe). The first one makes
   * conntrack the lifecycle source: its NEW/DESTROY start and end the connections it tracks.
   */
  observeConntrack(e: ConntrackEvent): void {
    this.#stats.conntrackEvents++;
    if (this.#stats.lifecycleSource !== 'conntrack') {
      this.#stats.lifecycleSource = 'conntrack';
      this.#onLifecycle?.('conntrack');
    }
    this.#ct.observe(e);
  }

  #create(u: ConnectionUpdate, size: number, deny: boolean): Conn | null {
    const workload = this.#ifaces.role(u.interfaceName) === 'workload';
    // Workload (pod veth, host side): ingress = sent by the pod. Host interface: egress = sent by the host.
    const senderIsLocal = workload === (u.firstHook === Hook.ingress);
    const localIsInitiator = senderIsLocal === u.firstFromInitiator;
    const localIp = localIsInitiator ? u.srcIp : u.dstIp;
    if (!deny) this.#overflow.noteLocal(u.interfaceName, u.family, localIp);
    if (workload) {
      this.#localPods.set(localIp, u.lastSeenMs);
    } else if (deny && this.#localPods.has(localIp)) {
      // Dropped on its way in from off the node (an ingress policy against a remote
      // client): the packet never reached the pod's veth, but the deny is the pod's.
    } else {
      if (!this.#hostEndpoints) {
        this.#stats.ignoredHostInterface++;
        return null;
      }
      if (!this.#resolver.isNodeIp(localIp)) {
        this.#stats.forwarded++;
        return null;
      }
    }
    const hostSide = !workload && !(deny && this.#localPods.has(localIp));
    if (size >= this.#maxConnections) {
      this.#stats.droppedTableFull++;
      if (!deny) {
        // Counted, not lost: the interface's overflow records take it (overflow.ts).
        this.#overflow.observeUntracked(u, localIsInitiator, localIp, this.#allow, this.#nums, this.#unkeyed);
        return null;
      }
      this.#stats.droppedPackets += u.origPackets + u.replyPackets;
      this.#stats.droppedBytes += u.origBytes + u.replyBytes;
      return null;
    }
    const c = new Conn(u, localIsInitiator, this.#nums);
    c.hostSide = hostSide;
    return c;
  }

  /** Whether prepareKeys() has connections left to look at. */
  get keysPending(): boolean {
    return this.#unkeyedHead < this.#unkeyed.length;
  }

  /**
   * Resolves endpoints and builds record keys of the connections that arrived since the
   * last flush, for at most about `budgetMs`, so that the flush finds them built: the
   * daemon calls it between drains, and a flush after 100k new connections otherwise
   * does all of it at once. The same work the flush would do, earlier; a key that goes
   * stale meanwhile (metadata reloaded, conntrack joined) is built again there. Returns
   * how many keys it built.
   */
  prepareKeys(budgetMs: number): number {
    const t0 = performance.now();
    const q = this.#unkeyed;
    let built = 0;
    let seen = 0;
    while (this.#unkeyedHead < q.length) {
      const c = q[this.#unkeyedHead++]!;
      if (++seen % 64 === 0 && performance.now() - t0 >= budgetMs) break;
      // Gone (released), or a flush would not give it a record key either.
      if (c.o === 0 || c.forwarded || (c.denied && c.netP <= 0 && !c.denySide)) continue;
      const a = c.denySide ? 1 : 0;
      const stamp = this.#keyStamp(a);
      if (c.keyStamp === stamp) continue;
      this.#resolveAndKey(c, a, stamp);
      built++;
    }
    if (this.#unkeyedHead >= q.length) {
      this.#unkeyed = [];
      this.#unkeyedHead = 0;
    }
    return built;
  }

  /**
   * What a record key of action `a` built now is valid for: (metadata generation, options
   * version, kind). The generation moves when the resolver's or the policy stage's version
   * does, by one, so the stamp stays an exact integer however long they churn.
   */
  #keyStamp(a: 0 | 1): number {
    const rv = this.#resolver.version;
    const pv = this.#policy?.version ?? 0;
    if (rv !== this.#seenResolverVersion || pv !== this.#seenPolicyVersion) {
      this.#seenResolverVersion = rv;
      this.#seenPolicyVersion = pv;
      this.#metadataGeneration++;
    }
    return this.#metadataGeneration * 1e6 + this.#optsVersion * 4 + this.#kind[a];
  }

  /** Resolves both endpoints (as they were when the connection began) and its Service, then its record key. */
  #resolveAndKey(c: Conn, a: 0 | 1, stamp: number, endpoints = true): void {
    const resolver = this.#resolver;
    if (endpoints) {
      // An overflow record's peer (and its local side, until an address is known) has none.
      const none = c.localIsClient ? [NET_UNKNOWN_LOCAL, NET_OVERFLOW] : [NET_OVERFLOW, NET_UNKNOWN_LOCAL];
      c.srcEp = c.cIp === '' ? none[0]! : resolver.resolve(c.cIp, c.firstSeenMs);
      c.dstEp = c.sIp === '' ? none[1]! : resolver.resolve(c.sIp, c.firstSeenMs);
    }
    const nat = c.ct?.dnat ? c.ct : null;
    const svc =
      nat === null
        ? resolver.service(c.sIp, c.sPort, c.proto)
        : resolver.service(nat.origDstIp, nat.origDstPort, c.proto);
    let pol: Trace | null = null;
    if (this.#includePolicies) {
      if (endpoints || c.trace === null) c.trace = traceOf(this.#policy, this.#stats, c, a);
      pol = c.trace;
    }
    c.group = this.#keys.key(c, svc, this.#kind[a], a === 0 ? 'allow' : 'deny', this.#includeService, pol);
    c.keyStamp = stamp;
  }

  /**
   * Closes the interval at `endTimeMs` and returns its lines, each built as it is taken,
   * so a caller that encodes each line and hands batches to a sink, waiting for them to
   * drain, never holds one flush's lines as strings (they die young). Every connection
   * active in the interval is in exactly one record; counters restart at zero. The
   * interval closes now, when the iterator is made; take every line before the next
   * flush (which reuses the records' labels: a line taken after it throws).
   */
  flushLineIterator(endTimeMs: number): IterableIterator<string> {
    const records = this.#close(endTimeMs);
    const no = this.#flushNo;
    const settings = {
      nodeName: this.#nodeName,
      includeLabels: this.#includeLabels,
      includePolicies: this.#includePolicies,
    };
    return this.#lines.lines(records, settings, () => this.#flushNo === no);
  }

  /** The same flush as records: the lines flushLineIterator() gives, parsed (how the tests read what the daemon writes). */
  flush(endTimeMs: number): FlowLogRecord[] {
    return Array.from(this.flushLineIterator(endTimeMs), (line) => JSON.parse(line) as FlowLogRecord);
  }

  #close(endTimeMs: number): FlushRecords {
    this.#ledger.age();
    // Pods not seen for a TCP idle timeout may be gone (their IPs reused elsewhere).
    for (const [ip, seen] of this.#localPods)
      if (seen + this.#tcpIdleMs < endTimeMs) this.#localPods.delete(ip);
    const startS = Math.floor(this.#intervalStartMs / 1000);
    let endS = Math.floor(endTimeMs / 1000);
    if (endS <= startS) endS = startS + 1; // end_time is never equal to start_time
    const groups: Group[] = [];
    // At most a record per connection; the caller holds the counters only while it takes
    // the flush's records, so none of them are kept between flushes.
    // Fresh each flush and garbage after it (6 MB at kind 0 with 100k connections): kept
    // for reuse it was resident between flushes, and the post-flush GC and malloc trim
    // give it back (src/common/memory.ts).
    this.#sums = new Float64Array(SUMS * Math.max(16, this.#allow.size + this.#deny.size));
    const no = ++this.#flushNo;
    this.#collect(this.#allow, 0, endTimeMs, groups, no);
    this.#collect(this.#deny, 1, endTimeMs, groups, no);
    this.#keys.sweep(no);
    this.#dropKindZeroKeys();
    this.#nums.shrinkIfSparse([this.#allow, this.#deny]);
    this.#ct.flushed();
    this.#unkeyed = []; // the flush built every key
    this.#unkeyedHead = 0;
    this.#intervalStartMs = endTimeMs;
    this.#stats.flushes++;
    this.#stats.records += groups.length;
    const sums = this.#sums;
    this.#sums = NO_SUMS;
    return { groups, sums, startS, endS };
  }

  /** Folds each connection of a table into its record, and ends or forgets those that are done. */
  #collect(table: Map<string, Conn>, a: 0 | 1, endMs: number, groups: Group[], no: number): void {
    // Cached keys are valid for one (metadata and policy versions, options version, kind).
    const stamp = this.#keyStamp(a);
    for (const [k, c] of table) {
      if (c.forwarded) {
        forget(table, k, c);
        this.#ct.stopWaiting(c);
        this.#stats.forwarded++;
        continue;
      }
      let completes = false;
      if (c.overflow) {
        // Its counts only, never completed: an overflow record is not a connection.
        if (!c.active) {
          forget(table, k, c); // no overflow in this interval: no record
          continue;
        }
      } else if (c.closed) {
        // Late packets of a connection whose completion was already reported.
        if (!c.active) {
          forget(table, k, c);
          this.#ct.stopWaiting(c);
          continue;
        }
      } else {
        // A connection conntrack tracks ends with its DESTROY (the TCP idle timeout stays
        // as a safety net); others (no conntrack) by idle timeout, and denied ones by the
        // short one whatever their protocol: a blocked SYN never sees FIN, RST or conntrack.
        const idle = a === 0 && (c.proto === 6 || c.ct !== null) ? this.#tcpIdleMs : this.#idleMs;
        if (!c.ended && c.lastSeenMs + idle <= endMs) c.ended = true;
        completes = c.ended;
        if (completes) this.#ct.stopWaiting(c);
      }
      if (c.denied && c.netP <= 0 && a === 0) {
        // Every packet of it was denied: it exists only as a deny record.
        if (completes) forget(table, k, c);
        c.reported = true;
        c.keyStamp = -1; // its record key is not kept alive meanwhile: build it again if needed
        continue;
      }
      if (c.keyStamp !== stamp) this.#resolveAndKey(c, a, stamp);
      else if (c.group === null) this.#resolveAndKey(c, a, stamp, false); // kind 0: see #dropKindZeroKeys
      if (this.#policy !== null) checkVerdict(this.#stats, c, a, completes);
      const g = c.group!;
      if (g.stamp !== no) {
        // First connection of this record in this flush.
        g.stamp = g.src.stamp = g.dst.stamp = g.svc.stamp = no;
        g.srcLabels = c.srcEp!.labels;
        g.dstLabels = c.dstEp!.labels;
        g.at = groups.length;
        groups.push(g);
      } else if (this.#includeLabels) {
        if (g.srcLabels !== c.srcEp!.labels) g.srcLabels = intersectLabels(g.srcLabels, c.srcEp!.labels);
        if (g.dstLabels !== c.dstEp!.labels) g.dstLabels = intersectLabels(g.dstLabels, c.dstEp!.labels);
      }
      const sums = this.#sums;
      const n = g.at * SUMS;
      if (!c.overflow) sums[n + NUM_FLOWS]!++;
      if (!c.reported) sums[n + STARTED]!++;
      if (completes) sums[n + COMPLETED]!++;
      if (c.localIsClient) {
        sums[n + BYTES_IN]! += c.s2cB;
        sums[n + PACKETS_IN]! += c.s2cP;
        sums[n + BYTES_OUT]! += c.c2sB;
        sums[n + PACKETS_OUT]! += c.c2sP;
      } else {
        sums[n + BYTES_IN]! += c.c2sB;
        sums[n + PACKETS_IN]! += c.c2sP;
        sums[n + BYTES_OUT]! += c.s2cB;
        sums[n + PACKETS_OUT]! += c.s2cP;
      }
      c.c2sB = c.c2sP = c.s2cB = c.s2cP = 0;
      c.active = false;
      c.reported = true;
      if (completes) {
        // TCP closed by FIN/RST stays one interval to absorb late packets (the last ACK);
        // idle-expired and non-TCP connections go now: a later packet is a new connection.
        if (c.proto === 6 && c.lastSeenMs + this.#tcpIdleMs > endMs) c.closed = true;
        else forget(table, k, c);
      }
    }
  }

  /**
   * At kind 0 every connection is its own record key, so keeping the keys between
   * flushes costs a `Group` per connection (~10 MB at 100k) for nothing a later flush
   * could not rebuild from the endpoints the connection keeps (~30 ms at 100k, against
   * the whole resolution that prepareKeys() moves before the flush). The flush's lines
   * still hold this flush's keys until they are taken.
   */
  #dropKindZeroKeys(): void {
    for (const a of [0, 1] as const) {
      if (this.#kind[a] !== 0 || this.#keys.size(a) === 0) continue;
      const table = a === 0 ? this.#allow : this.#deny;
      this.#keys.dropKeys(a, table.size);
      for (const c of table.values()) c.group = null;
    }
  }
}

function isNewTcpOpen(u: ConnectionUpdate): boolean {
  return (
    u.proto === 6 &&
    u.initiatorHow === InitiatorHow.syn &&
    (u.origTcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN
  );
}
