// A/B for the ship bench: child runs of two checkouts (and variants) interleaved round
// by round, so each sees the same machine noise; prints the medians per variant.
//
//   node bench/tools/ship-ab.ts ROUNDS RECORDS 'name|checkout|sink|extra args' ...

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const [rounds, records, ...variants] = process.argv.slice(2);
const rows = new Map<
  string,
  { shipMs: number; handMs: number; cpuMs: number; sysMs: number; acked: number; remoteCpuMs?: number }[]
>();
for (let r = 0; r < Number(rounds); r++)
  for (const v of variants) {
    const [name, dir, sink, extra] = v.split('|') as [string, string, string, string?];
    const args = [
      '--max-semi-space-size=8',
      join(dir, 'bench/ship.bench.ts'),
      '--child',
      sink,
      '--records',
      records!,
    ];
    if (extra) args.push(...extra.split(' '));
    const out = JSON.parse(
      execFileSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] }).toString(),
    );
    rows.set(name, [...(rows.get(name) ?? []), out]);
    console.error(name, r, Math.round(out.shipMs), Math.round(out.cpuMs));
  }
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  '| variant | flush handed over (ms) | all acknowledged (ms) | records/s acknowledged | CPU (ms) | CPU µs/record | of it kernel (ms) | remote CPU (ms) | runs (ms acknowledged) |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const [name, rs] of rows) {
  const ship = med(rs.map((x) => x.shipMs));
  const cpu = med(rs.map((x) => x.cpuMs));
  console.log(
    `| ${name} | ${med(rs.map((x) => x.handMs)).toFixed(0)} | ${ship.toFixed(0)} | ${(Number(records) / (ship / 1000)).toFixed(0)} | ${cpu.toFixed(0)} | ${((cpu * 1000) / Number(records)).toFixed(1)} | ${med(rs.map((x) => x.sysMs)).toFixed(0)} | ${med(rs.map((x) => x.remoteCpuMs ?? Number.NaN)).toFixed(0)} | ${rs.map((x) => x.shipMs.toFixed(0)).join(', ')} |`,
  );
}
