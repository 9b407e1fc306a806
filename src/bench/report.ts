// The summary tables `flowlogd bench` prints (Markdown, so they paste into BENCHMARKS.md).
import type { LabResult, LiveResult } from './schema.ts';

const f = (x: number | null, digits: number, suffix = '') =>
  x === null
    ? '–'
    : `${x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })}${suffix}`;

export function labTable(r: LabResult): string {
  const m = r.machine;
  const out: string[] = [
    `flowlogd bench lab — ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${m.hostname}: Linux ${m.kernel}, ${m.cpus} × ${m.cpu}, node ${m.node}`,
    `command: ${r.command}`,
    `${r.rounds} interleaved round(s) of ${r.seconds} s per variant; BPF stats on throughout; pps = packets through the client pod's host veth (both directions)`,
    '',
  ];
  for (const s of r.scenarios) {
    out.push(`### ${s.name}: ${s.title}`, '');
    out.push(
      '| variant | pps (median) | ÷ no program | ÷ empty program | ns per run | ns above empty | collector CPU s per M packets | collector CPU (share of a core) | collector RSS MiB | cache hit rate |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const v of s.summary)
      out.push(
        `| ${v.variant} | ${f(v.medianPps, 0)} | ${f(v.ratioToNone, 3)} | ${f(v.ratioToEmpty, 3)} | ${f(v.medianNsPerRun, 1)} | ${f(v.nsAboveEmpty, 1)} | ${f(v.cpuSecondsPerMillionPackets, 3)} | ${f(v.collectorCpuShare === null ? null : v.collectorCpuShare * 100, 1, '%')} | ${f(v.medianRssMiB, 1)} | ${f(v.medianCacheHitRate === null ? null : v.medianCacheHitRate * 100, 1, '%')} |`,
      );
    out.push('');
  }
  return `${out.join('\n')}\n`;
}

export function liveTable(r: LiveResult): string {
  const out: string[] = [
    `flowlogd bench live — ${r.seconds} s from ${r.startedAt.slice(0, 19).replace('T', ' ')} UTC on ${r.machine.hostname} (Linux ${r.machine.kernel}, ${r.machine.cpus} CPUs)`,
    '',
    '| program | id | hook | runs | ns per run | packets/s | share of one core | held by pid |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const p of r.programs)
    out.push(
      `| ${p.name} | ${p.id} | ${p.hook} | ${p.runs} | ${f(p.nsPerRun, 1)} | ${f(p.packetsPerSecond, 0)} | ${f(p.coreShare * 100, 3, '%')} | ${p.owners.join(', ') || '–'} |`,
    );
  const t = r.total;
  out.push(
    `| **all** | | | ${t.runs} | ${f(t.nsPerRun, 1)} | ${f(t.packetsPerSecond, 0)} | ${f(t.coreShare * 100, 3, '%')} | |`,
    '',
  );
  if (r.daemons.length) {
    out.push('| daemon pid | CPU s | share of one core | RSS MiB (anon + file) |', '|---|---|---|---|');
    for (const d of r.daemons)
      out.push(
        `| ${d.pid} | ${f(d.cpuSeconds, 2)} | ${f(d.coreShare * 100, 2, '%')} | ${f(d.rssBytes / 2 ** 20, 1)} (${f(d.rssAnonBytes / 2 ** 20, 1)} + ${f(d.rssFileBytes / 2 ** 20, 1)}) |`,
      );
    out.push('');
  }
  return `${out.join('\n')}\n`;
}
