// Go-style durations (time.ParseDuration): "300s", "5m", "1h30m", "1.5h", "500ms", "0".

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART_RE = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds, or null when `s` is not a Go duration. Negative durations are rejected. */
export function parseDuration(s: string): number | null {
  if (s === '0') return 0;
  if (s === '') return null;
  let ms = 0;
  PART_RE.lastIndex = 0;
  while (PART_RE.lastIndex < s.length) {
    const m = PART_RE.exec(s);
    if (m === null) return null;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return ms;
}

/** Shortest Go-style text for a whole number of milliseconds (for logs and docs). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  if (rest > 0) out += `${rest}ms`;
  return out;
}
