// The statistics of `flowlogd bench lab`: the order of interleaved rounds, medians, and
// pair ratios (each variant's run against the baseline run of the same round). On a
// shared 2-vCPU VM the packet path switches between speeds from one minute to the next,
// so a ratio of medians taken minutes apart says little; a ratio inside one round does.

export function median(xs: readonly number[]): number | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The variants' order in each round: round r starts at variant r (mod n), so every
 * variant runs first, second, ... equally often and a warm-up or drift inside a round
 * does not always fall on the same one. Returns [round][position] = variant index.
 */
export function roundOrder(variants: number, rounds: number): number[][] {
  if (!Number.isInteger(variants) || variants < 1) throw new RangeError(`variants=${variants}: must be ≥ 1`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds=${rounds}: must be ≥ 1`);
  return Array.from({ length: rounds }, (_, r) =>
    Array.from({ length: variants }, (_, k) => (r + k) % variants),
  );
}

/**
 * Ratio of each round's `value` to the baseline's in the same round, for the rounds
 * where both ran and the baseline is not zero.
 */
export function pairRatios(
  value: readonly (number | null)[],
  baseline: readonly (number | null)[],
): number[] {
  if (value.length !== baseline.length)
    throw new RangeError(`pairRatios: ${value.length} rounds against ${baseline.length}`);
  const out: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    const b = baseline[i];
    if (v !== null && v !== undefined && b !== null && b !== undefined && b !== 0) out.push(v / b);
  }
  return out;
}

/** One measured window of one variant in one round. */
export interface RunSample {
  round: number;
  variant: string;
  /** Packets through the watched interface (both directions) per second. */
  pps: number;
  packets: number;
  seconds: number;
  /** Kernel BPF stats: run time / run count over the window, both hooks; null: no program. */
  nsPerRun: number | null;
  nsPerRunByHook: Record<string, number>;
  /** The collector process's CPU (user + system, every thread) over the window; null: none. */
  collectorCpuSeconds: number | null;
  /** Its resident memory at the end of the window. */
  collectorRssBytes: number | null;
  /** flowlogd: packets counted in its per-CPU cache over the window / program runs. */
  cacheHitRate: number | null;
  /** flowlogd's kernel counters over the run (cacheHits, cacheEvictions, ctLookups, ...). */
  kernelCounters?: Record<string, number>;
  /** What the traffic generator reported (sent, received, errors). */
  generator: { sent: number; received: number; errors: number };
}

export interface VariantSummary {
  variant: string;
  runs: number;
  medianPps: number | null;
  /** Median over rounds of pps ÷ pps without any program. */
  ratioToNone: number | null;
  /** Median over rounds of pps ÷ pps with the empty program (the hook's floor). */
  ratioToEmpty: number | null;
  medianNsPerRun: number | null;
  /** Median over rounds of (ns per run − the empty program's ns per run). */
  nsAboveEmpty: number | null;
  /** Collector CPU seconds per million packets, median over rounds. */
  cpuSecondsPerMillionPackets: number | null;
  /** Share of one core the collector process used, median over rounds. */
  collectorCpuShare: number | null;
  medianRssMiB: number | null;
  medianCacheHitRate: number | null;
}

/** Per-round values of `f` for one variant, indexed by round (null where it did not run). */
function byRound(
  samples: readonly RunSample[],
  variant: string,
  rounds: number,
  f: (s: RunSample) => number | null,
): (number | null)[] {
  const out: (number | null)[] = Array.from({ length: rounds }, () => null);
  for (const s of samples) if (s.variant === variant && s.round < rounds) out[s.round] = f(s);
  return out;
}

const present = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);

/** Summaries per variant of one scenario's samples; `none` and `empty` are the baselines. */
export function summarize(samples: readonly RunSample[], variants: readonly string[]): VariantSummary[] {
  const rounds = samples.reduce((m, s) => Math.max(m, s.round + 1), 0);
  const pps = (v: string) => byRound(samples, v, rounds, (s) => s.pps);
  const ns = (v: string) => byRound(samples, v, rounds, (s) => s.nsPerRun);
  const nonePps = pps('none');
  const emptyPps = pps('empty');
  const emptyNs = ns('empty');
  return variants.map((variant) => {
    const mine = samples.filter((s) => s.variant === variant);
    const myNs = ns(variant);
    const above: (number | null)[] = myNs.map((x, i) =>
      x !== null && emptyNs[i] !== null ? x - emptyNs[i]! : null,
    );
    return {
      variant,
      runs: mine.length,
      medianPps: median(mine.map((s) => s.pps)),
      ratioToNone: variant === 'none' ? 1 : median(pairRatios(pps(variant), nonePps)),
      ratioToEmpty: variant === 'empty' ? 1 : median(pairRatios(pps(variant), emptyPps)),
      medianNsPerRun: median(present(myNs)),
      nsAboveEmpty: variant === 'empty' ? null : median(present(above)),
      cpuSecondsPerMillionPackets: median(
        mine
          .filter((s) => s.collectorCpuSeconds !== null && s.packets > 0)
          .map((s) => s.collectorCpuSeconds! / (s.packets / 1e6)),
      ),
      collectorCpuShare: median(
        mine.filter((s) => s.collectorCpuSeconds !== null).map((s) => s.collectorCpuSeconds! / s.seconds),
      ),
      medianRssMiB: median(
        mine.filter((s) => s.collectorRssBytes !== null).map((s) => s.collectorRssBytes! / 2 ** 20),
      ),
      medianCacheHitRate: median(present(mine.map((s) => s.cacheHitRate))),
    };
  });
}
