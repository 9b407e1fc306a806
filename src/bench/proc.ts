// What a process costs, from /proc: CPU time of every thread, resident memory, and which
// processes hold which BPF programs (a bpf-prog or bpf_link fd's fdinfo names its
// program), so `bench live` finds the daemon beside it without being told its pid.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ: fixed at 100 on every Linux ABI Node supports

/** User + system CPU seconds of the whole process (all threads), or null if it is gone. */
export function cpuSeconds(pid: number, tid?: string): number | null {
  try {
    const stat = readFileSync(
      tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`,
      'utf8',
    );
    // Fields after the command (which may hold spaces and parentheses): state is field 3.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND; // utime, stime (fields 14, 15)
  } catch {
    return null;
  }
}

export interface Memory {
  rssBytes: number;
  rssAnonBytes: number;
  rssFileBytes: number;
  hwmBytes: number;
}

/** Resident memory from /proc/PID/status, or null if the process is gone. */
export function memory(pid: number): Memory | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return {
    rssBytes: kb('VmRSS'),
    rssAnonBytes: kb('RssAnon'),
    rssFileBytes: kb('RssFile') + kb('RssShmem'),
    hwmBytes: kb('VmHWM'),
  };
}

/** The BPF program ids a process holds by a program or link fd. */
export function programsOf(pid: number): Set<number> {
  const ids = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return ids;
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (!target.startsWith('anon_inode:bpf')) continue;
      const m = /^prog_id:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return ids;
}

/** Every process holding one of `ids`: pid → the ids it holds. */
export function ownersOf(ids: readonly number[]): Map<number, number[]> {
  const want = new Set(ids);
  const out = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const held = [...programsOf(pid)].filter((id) => want.has(id));
    if (held.length) out.set(pid, held);
  }
  return out;
}
