// A lab of "pods" on this machine: each pod is a network namespace joined to the host by
// a veth pair whose host side is named like Calico's (cali + 11 hex of
// sha1("<namespace>.<pod>")), routed from the host Calico-style (/32 host routes,
// 169.254.1.1 gateway answered by proxy ARP, link-local IPv6 gateway). Conntrack runs in
// the host netns (an nft ct rule in a table of our own) with accounting on.
//
// Everything made here carries the lab's unique prefix and is recorded; destroy()
// deletes exactly that and restores the host sysctls it changed.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { projectPath, siblingModule } from '../common/paths.ts';

export interface PodSpec {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  generateName?: string;
}

export interface Pod extends PodSpec {
  netns: string;
  hostIf: string;
  ipv4: string;
  ipv6: string;
}

const TRAFFIC = siblingModule(import.meta.url, 'traffic');
const HOST_MAC = 'ee:ee:ee:ee:ee:ee';
const HOST_LL6 = 'fe80::ecee:eeff:feee:eeee';

export function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Destinations of the host's IPv4 and IPv6 routes (`10.213.5.2`, `fd00:f10e:1::/64`). */
function routedAddresses(): string[] {
  const out: string[] = [];
  for (const family of ['-4', '-6']) {
    try {
      for (const r of JSON.parse(run('ip', ['-j', family, 'route'])) as { dst?: string }[])
        if (r.dst) out.push(r.dst);
    } catch {
      // No routes of that family to avoid.
    }
  }
  return out;
}

function tryRun(cmd: string, args: string[]): void {
  try {
    run(cmd, args);
  } catch {
    // already gone
  }
}

const FOREIGN_PROGRAM = projectPath('bpf', '.output', 'foreign_tc.bpf.o');

/**
 * Puts a clsact qdisc and a program flowlogd does not own (it returns "go on") at
 * ingress and egress of `ifname`, as another agent would; returns that program's ids.
 */
export function attachForeignProgram(ifname: string, priority = 5): number[] {
  run('tc', ['qdisc', 'add', 'dev', ifname, 'clsact']);
  for (const dir of ['ingress', 'egress']) {
    const filter = ['filter', 'add', 'dev', ifname, dir, 'prio', String(priority), 'handle', '1'];
    run('tc', [...filter, 'bpf', 'da', 'obj', FOREIGN_PROGRAM, 'sec', 'tc']);
  }
  const shown = ['ingress', 'egress']
    .map((dir) => run('tc', ['filter', 'show', 'dev', ifname, dir]))
    .join('');
  return [...shown.matchAll(/ id (\d+)/g)].map((m) => Number(m[1]));
}

/**
 * A lab's IPv6 /64 from its id, in canonical text: its third group never starts with 0
 * (conntrack prints fd00:f10e:a3f::1 for fd00:f10e:0a3f::1), so the lab's addresses
 * compare equal to what tools print. A lab id starting with 0 once lost every IPv6
 * entry from the datapath test's comparison (77 of 109 connections).
 */
function subnet6Of(id: string): string {
  return `fd00:f10e:${(0x1000 | (Number.parseInt(id.slice(0, 4), 16) & 0xfff)).toString(16)}`;
}

/** Calico's host-side interface name for a pod. */
export function caliName(namespace: string, name: string): string {
  return `cali${createHash('sha1').update(`${namespace}.${name}`).digest('hex').slice(0, 11)}`;
}

function sysctl(key: string, value?: string): string {
  if (value === undefined) return run('sysctl', ['-n', key]).trim();
  run('sysctl', ['-qw', `${key}=${value}`]);
  return value;
}

/**
 * Labs not yet destroyed. A `flowlogd bench lab` or `demo` stopped with Ctrl-C or SIGTERM
 * (or a test runner cancelling a file) would otherwise leave its netns, veths, nft table,
 * iptables rules and sysctls behind: the handlers destroy every live lab, then exit with
 * the signal's status. Installed only while a lab lives, so a process without one keeps
 * Node's default signal behaviour. (SIGKILL cannot be caught: the next lab avoids what it
 * left, see the constructor.)
 */
const liveLabs = new Set<Lab>();
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

function onSignal(signal: keyof typeof SIGNAL_EXIT): void {
  for (const lab of [...liveLabs]) void lab.destroy();
  process.exit(SIGNAL_EXIT[signal]);
}

function trackLab(lab: Lab, live: boolean): void {
  if (live) liveLabs.add(lab);
  else liveLabs.delete(lab);
  for (const signal of Object.keys(SIGNAL_EXIT) as (keyof typeof SIGNAL_EXIT)[]) {
    process.removeListener(signal, onSignal);
    if (liveLabs.size > 0) process.on(signal, onSignal);
  }
}

export class Lab {
  readonly prefix: string;
  readonly subnet4: string;
  readonly subnet6: string;
  readonly pods: Pod[] = [];
  private readonly savedSysctls = new Map<string, string>();
  private readonly children = new Set<ChildProcess>();
  private nftTable: string | null = null;
  /** iptables rules the lab inserted (tool, rule), removed by destroy(). */
  private readonly forwardRules: [string, string[]][] = [];
  private next = 2;

  constructor() {
    // 10.213.X.0/24 and fd00:f10e:Y::/64: private to this machine's labs. A subnet an
    // earlier lab used may still have conntrack entries (TIME_WAIT lasts 2 minutes), which
    // would mix into this lab's ground truth: pick one nobody has left entries in. Nor
    // one another lab still routes (running now, or left behind by a killed test): its
    // pod routes would collide with this lab's.
    const used = new Set([...conntrackEntries().map((e) => e.src), ...routedAddresses()]);
    let id = randomBytes(3).toString('hex');
    for (let i = 0; i < 64; i++) {
      const x = Number.parseInt(id.slice(0, 2), 16);
      const y = subnet6Of(id);
      if (![...used].some((ip) => ip.startsWith(`10.213.${x}.`) || ip.startsWith(`${y}:`))) break;
      id = randomBytes(3).toString('hex');
    }
    this.prefix = `fl${id}`;
    this.subnet4 = `10.213.${Number.parseInt(id.slice(0, 2), 16)}`;
    this.subnet6 = subnet6Of(id);
    this.setHostSysctl('net.ipv4.ip_forward', '1');
    this.setHostSysctl('net.ipv6.conf.all.forwarding', '1');
    this.setHostSysctl('net.netfilter.nf_conntrack_acct', '1');
    // Conntrack accounts only packets it finds valid; with window tracking strict, an
    // occasional out-of-window ACK near the end of a large transfer goes uncounted while
    // it crossed the wire (and TC counted it). Liberal tracking, as kube-proxy sets it,
    // makes conntrack's accounting the packets that really passed.
    this.setHostSysctl('net.netfilter.nf_conntrack_tcp_be_liberal', '1');
    trackLab(this, true);
    this.acceptForwarding();
  }

  /**
   * Pods talk through the host's forward path. A host whose iptables FORWARD policy is
   * DROP (dockerd sets it when it starts) would drop every pod-to-pod packet, and a
   * separate nft table cannot override another table's drop: insert accepts for the
   * lab's own subnets at the top of that chain, for the lab's lifetime only.
   */
  private acceptForwarding(): void {
    for (const [tool, net] of [
      ['iptables', `${this.subnet4}.0/24`],
      ['ip6tables', `${this.subnet6}::/64`],
    ] as const) {
      let policy: string;
      try {
        policy = execFileSync(tool, ['-S', 'FORWARD'], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        });
      } catch {
        continue; // no such tool or table: nothing there drops
      }
      if (!/^-P FORWARD DROP$/m.test(policy)) continue;
      for (const dir of ['-s', '-d']) {
        const rule = [
          'FORWARD',
          dir,
          net,
          '-m',
          'comment',
          '--comment',
          `${this.prefix} lab`,
          '-j',
          'ACCEPT',
        ];
        run(tool, ['-I', ...rule]);
        this.forwardRules.push([tool, rule]);
      }
    }
  }

  /** Sets a host sysctl for the lab's lifetime (destroy() restores it). */
  setHostSysctl(key: string, value: string): void {
    if (!this.savedSysctls.has(key)) this.savedSysctls.set(key, sysctl(key));
    sysctl(key, value);
  }

  /** Makes the host netns track connections (conntrack only runs when a rule needs it). */
  enableConntrack(): void {
    if (this.nftTable) return;
    this.nftTable = `${this.prefix}_ct`;
    run(
      'nft',
      ['-f', '-'],
      `table inet ${this.nftTable} {
  chain forward_ct { type filter hook forward priority 0; policy accept; ct state established,related counter accept; }
  chain output_ct { type filter hook output priority 0; policy accept; ct state established,related counter accept; }
}\n`,
    );
  }

  /**
   * A pod behind a Calico-named veth; with `remote`, a host elsewhere reached through a
   * link that is not a pod veth (named `<prefix>r<n>`), as traffic from off the node is.
   */
  addPod(spec: PodSpec, opts: { remote?: boolean } = {}): Pod {
    const n = this.next++;
    const netns = `${this.prefix}-${n}`;
    const hostIf = opts.remote ? `${this.prefix}r${n}` : caliName(spec.namespace, spec.name);
    const ipv4 = `${this.subnet4}.${n}`;
    const ipv6 = `${this.subnet6}::${n.toString(16)}`;
    run('ip', ['netns', 'add', netns]);
    const pod: Pod = { ...spec, netns, hostIf, ipv4, ipv6 };
    this.pods.push(pod);
    const tmp = `${this.prefix}t${n}`;
    run('ip', ['link', 'add', hostIf, 'address', HOST_MAC, 'type', 'veth', 'peer', 'name', tmp]);
    run('ip', ['link', 'set', tmp, 'netns', netns]);
    const inPod = (...args: string[]) => run('ip', ['-n', netns, ...args]);
    inPod('link', 'set', tmp, 'name', 'eth0');
    inPod('link', 'set', 'lo', 'up');
    run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv6.conf.eth0.accept_dad=0']);
    inPod('link', 'set', 'eth0', 'up');
    inPod('addr', 'add', `${ipv4}/32`, 'dev', 'eth0');
    inPod('-6', 'addr', 'add', `${ipv6}/128`, 'dev', 'eth0', 'nodad');
    inPod('route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link');
    inPod('route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
    inPod('-6', 'route', 'add', 'default', 'via', HOST_LL6, 'dev', 'eth0');
    sysctl(`net.ipv4.conf.${hostIf}.proxy_arp`, '1');
    // As Calico does: answer proxy ARP at once (the default waits up to 0.8 s, long
    // enough for a SYN retransmit that conntrack then marks invalid and leaves uncounted).
    sysctl(`net.ipv4.neigh.${hostIf}.proxy_delay`, '0');
    sysctl(`net.ipv6.conf.${hostIf}.accept_dad`, '0');
    run('ip', ['link', 'set', hostIf, 'up']);
    run('ip', ['route', 'add', `${ipv4}/32`, 'dev', hostIf]);
    run('ip', ['-6', 'route', 'add', `${ipv6}/128`, 'dev', hostIf]);
    return pod;
  }

  /** Runs a command inside a pod and returns its stdout. */
  exec(pod: Pod, cmd: string, args: string[]): string {
    return run('ip', ['netns', 'exec', pod.netns, cmd, ...args]);
  }

  /** Starts a long-running process inside a pod; it is killed by destroy(). */
  spawn(pod: Pod, cmd: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', pod.netns, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Starts traffic.ts in a pod; resolves with the first JSON line it prints. */
  async traffic(
    pod: Pod,
    args: string[],
    opts: { keep?: boolean } = {},
  ): Promise<{ line: unknown; child: ChildProcess }> {
    const child = this.spawn(pod, process.execPath, [TRAFFIC, ...args]);
    let err = '';
    child.stderr?.on('data', (c) => {
      err += c;
    });
    const line = await new Promise<unknown>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (c) => {
        out += c;
        const nl = out.indexOf('\n');
        if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)));
      });
      child.on('exit', (code) => reject(new Error(`traffic ${args.join(' ')} exited ${code}: ${err}`)));
    });
    if (!opts.keep) await new Promise((r) => (child.exitCode !== null ? r(null) : child.on('exit', r)));
    return { line, child };
  }

  /** Starts a TCP+UDP server in a pod and waits until it listens. */
  async serve(pod: Pod, port: number): Promise<ChildProcess> {
    return (await this.traffic(pod, ['serve', '--port', String(port)], { keep: true })).child;
  }

  ping(pod: Pod, dst: string, count: number, size = 56): void {
    this.exec(pod, 'ping', [
      '-q',
      '-n',
      '-c',
      String(count),
      '-i',
      '0.01',
      '-s',
      String(size),
      '-W',
      '1',
      dst,
    ]);
  }

  /** Removes what the lab made; synchronous inside, so the signal handler can run it. */
  async destroy(): Promise<void> {
    trackLab(this, false);
    for (const child of this.children) child.kill('SIGKILL');
    for (const pod of this.pods) tryRun('ip', ['netns', 'del', pod.netns]); // takes its veth pair along
    if (this.nftTable) tryRun('nft', ['delete', 'table', 'inet', this.nftTable]);
    this.nftTable = null;
    for (const [tool, rule] of this.forwardRules.splice(0)) tryRun(tool, ['-D', ...rule]);
    // The lab's own conntrack entries (its subnets are its alone): a UDP entry outlives
    // its lab by 30 s, and a daemon started meanwhile would dump it.
    for (const [family, net] of [
      ['ipv4', `${this.subnet4}.0/24`],
      ['ipv6', `${this.subnet6}::/64`],
    ])
      for (const dir of ['-s', '-d'])
        try {
          execFileSync('conntrack', ['-D', '-f', family!, dir, net!], { stdio: 'ignore' });
        } catch {
          // none left (conntrack exits 1 when nothing matched)
        }
    for (const [k, v] of this.savedSysctls) sysctl(k, v);
    this.savedSysctls.clear(); // a second destroy() must not restore them over a later lab's
    this.pods.length = 0;
  }
}

/** One conntrack entry's counters in its original and reply directions. */
export interface ConntrackEntry {
  proto: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  origPackets: number;
  origBytes: number;
  replyPackets: number;
  replyBytes: number;
  icmpId?: number;
}

/** `conntrack -L -o extended` of the host netns (both families), parsed. */
/**
 * `conntrack -L` of one family. A dump the table changed under fails now and then
 * (interrupted): retried, and an error after that is thrown, never read as "no entries"
 * (ground truth silently missing a family once made a test compare 77 connections).
 */
function listConntrack(family: string): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync('conntrack', ['-L', '-f', family, '-o', 'extended'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        // The host's table, not only the lab's: 32k entries a benchmark left behind are
        // ~6 MB of text, past execFileSync's 1 MiB default (ENOBUFS failed a whole suite).
        maxBuffer: 1 << 30,
      });
    } catch (err) {
      if (attempt >= 5) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

export function conntrackEntries(): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const text = listConntrack(family);
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5) continue;
      const kv = (k: string) => f.filter((x) => x.startsWith(`${k}=`)).map((x) => x.slice(k.length + 1));
      const src = kv('src');
      const dst = kv('dst');
      const packets = kv('packets').map(Number);
      const bytes = kv('bytes').map(Number);
      if (src.length < 1 || packets.length < 2) continue;
      const sport = kv('sport');
      const dport = kv('dport');
      const id = kv('id');
      out.push({
        proto: f[2]!,
        src: src[0]!,
        dst: dst[0]!,
        sport: Number(sport[0] ?? 0),
        dport: Number(dport[0] ?? 0),
        origPackets: packets[0]!,
        origBytes: bytes[0]!,
        replyPackets: packets[1]!,
        replyBytes: bytes[1]!,
        ...(id.length ? { icmpId: Number(id[0]) } : {}),
      });
    }
  }
  return out;
}
