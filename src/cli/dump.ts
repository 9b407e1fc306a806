// `flowlogd dump`: the debugging view. Attaches, counts for N seconds (or until SIGINT),
// and prints one JSON line per (interface, connection) with the totals it saw.
import { protoName } from '../aggregate/record.ts';
import { FlowDatapath } from '../datapath/datapath.ts';
import { type ConnectionUpdate, TcpFlag } from '../datapath/types.ts';

export interface DumpLine {
  interface: string;
  proto: string;
  src_ip: string;
  src_port: number | null;
  dst_ip: string;
  dst_port: number | null;
  icmp?: { type: number; code: number; id: number };
  orig_packets: number;
  orig_bytes: number;
  reply_packets: number;
  reply_bytes: number;
  first_seen: string;
  last_seen: string;
  tcp_flags?: { orig: string[]; reply: string[] };
}

interface Totals {
  line: DumpLine;
  how: number;
  origFlags: number;
  replyFlags: number;
  firstMs: number;
  lastMs: number;
}

const FLAG_NAMES = Object.entries(TcpFlag) as [string, number][];

function flagNames(bits: number): string[] {
  return FLAG_NAMES.filter(([, bit]) => bits & bit).map(([name]) => name);
}

/** Sums datapath updates per (interface, connection), keeping the surest orientation. */
export class DumpTable {
  readonly #rows = new Map<string, Totals>();

  add(u: ConnectionUpdate & { icmpId?: number }): void {
    let t = this.#rows.get(u.key);
    const icmp = u.proto === 1 || u.proto === 58;
    if (t && u.initiatorHow > t.how && u.srcIp !== t.line.src_ip) {
      // A surer update says the other side opened the connection: turn the row round.
      const l = t.line;
      [l.src_ip, l.dst_ip, l.src_port, l.dst_port] = [l.dst_ip, l.src_ip, l.dst_port, l.src_port];
      [l.orig_packets, l.reply_packets, l.orig_bytes, l.reply_bytes] = [
        l.reply_packets,
        l.orig_packets,
        l.reply_bytes,
        l.orig_bytes,
      ];
      [t.origFlags, t.replyFlags] = [t.replyFlags, t.origFlags];
    }
    if (!t) {
      t = {
        line: {
          interface: u.interfaceName,
          proto: protoName(u.proto),
          src_ip: u.srcIp,
          src_port: icmp ? null : u.srcPort,
          dst_ip: u.dstIp,
          dst_port: icmp ? null : u.dstPort,
          ...(icmp ? { icmp: { type: u.icmpType, code: u.icmpCode, id: u.icmpId ?? 0 } } : {}),
          orig_packets: 0,
          orig_bytes: 0,
          reply_packets: 0,
          reply_bytes: 0,
          first_seen: '',
          last_seen: '',
        },
        how: u.initiatorHow,
        origFlags: 0,
        replyFlags: 0,
        firstMs: u.firstSeenMs,
        lastMs: u.lastSeenMs,
      };
      this.#rows.set(u.key, t);
    }
    const sameWay = u.srcIp === t.line.src_ip && (icmp || u.srcPort === t.line.src_port);
    t.how = Math.max(t.how, u.initiatorHow);
    const l = t.line;
    // An update oriented the other way adds its orig direction to the row's reply one.
    const [o, r] = sameWay ? (['orig', 'reply'] as const) : (['reply', 'orig'] as const);
    l.orig_packets += u[`${o}Packets`];
    l.orig_bytes += u[`${o}Bytes`];
    l.reply_packets += u[`${r}Packets`];
    l.reply_bytes += u[`${r}Bytes`];
    t.origFlags |= u[`${o}TcpFlags`];
    t.replyFlags |= u[`${r}TcpFlags`];
    t.firstMs = Math.min(t.firstMs, u.firstSeenMs);
    t.lastMs = Math.max(t.lastMs, u.lastSeenMs);
  }

  lines(): DumpLine[] {
    return [...this.#rows.values()]
      .sort((a, b) => a.firstMs - b.firstMs)
      .map((t) => ({
        ...t.line,
        first_seen: new Date(t.firstMs).toISOString(),
        last_seen: new Date(t.lastMs).toISOString(),
        ...(t.line.proto === 'tcp'
          ? { tcp_flags: { orig: flagNames(t.origFlags), reply: flagNames(t.replyFlags) } }
          : {}),
      }));
  }
}

export interface DumpOptions {
  interfaces: string[];
  seconds: number | null;
  attachMode: 'auto' | 'tcx' | 'clsact';
  write: (line: string) => void;
  log: (msg: string) => void;
}

export async function dump(opts: DumpOptions): Promise<void> {
  const table = new DumpTable();
  const dp = new FlowDatapath({ interfaces: opts.interfaces, attachMode: opts.attachMode }, (u) =>
    table.add(u),
  );
  dp.on('attached', (e) => opts.log(`attached to ${e.name} (${e.mode})`));
  dp.on('detached', (e) => opts.log(`detached from ${e.name}`));
  dp.on('attach-failed', (e) => opts.log(`could not attach to ${e.name}: ${e.message}`));
  dp.on('leftover-unchecked', (e) => opts.log(e.message ?? ''));
  if (dp.interfaces().length === 0)
    opts.log(`no interface matches ${opts.interfaces.join(',')} yet; waiting for one`);
  await new Promise<void>((resolve) => {
    // Either timer keeps the process alive until the time is up or a signal comes.
    const timer = setTimeout(resolve, (opts.seconds ?? 86400) * 1000);
    const onSignal = () => {
      clearTimeout(timer);
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  await dp.stop();
  dp.close();
  for (const line of table.lines()) opts.write(`${JSON.stringify(line)}\n`);
}
