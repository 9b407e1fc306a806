// The SVG chart written next to `bench lab`'s JSON: per scenario, packets/s of each
// variant as a ratio to no program (left panel) and ns per program run (right panel),
// so two runs compare at a glance. Plain SVG text: no browser or canvas needed.
import type { LabResult } from './schema.ts';

const COLORS: Record<string, string> = {
  none: '#9e9e9e',
  empty: '#607d8b',
  flowlogd: '#1e88e5',
  pmacctd: '#e53935',
  softflowd: '#fb8c00',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

interface Panel {
  title: string;
  value: (scenario: LabResult['scenarios'][number], variant: string) => number | null;
  label: (x: number) => string;
  /** Axis maximum given the largest value. */
  max: (largest: number) => number;
  floor?: number;
}

export function labChart(r: LabResult): string {
  const variants = r.variants;
  const W = 980;
  const panelW = 440;
  const rowH = 16 * variants.length + 18;
  const top = 64;
  const H = top + rowH * r.scenarios.length + 40;
  const left = 120;
  const barMax = panelW - left - 56;
  const panels: Panel[] = [
    {
      title: 'packets/s ÷ without any program (median of pair ratios)',
      value: (s, v) => s.summary.find((x) => x.variant === v)?.ratioToNone ?? null,
      label: (x) => x.toFixed(3),
      max: () => 1.05,
      floor: 0,
    },
    {
      title: 'ns per program run (BPF stats, median)',
      value: (s, v) => s.summary.find((x) => x.variant === v)?.medianNsPerRun ?? null,
      label: (x) => `${x.toFixed(1)} ns`,
      max: (largest) => Math.max(10, Math.ceil(largest / 10) * 10),
    },
  ];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<title>${esc(`flowlogd bench lab ${r.startedAt.slice(0, 16)}: packets/s ratios and ns per program run by scenario`)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="12" y="20" font-size="14" font-weight="bold">${esc(`flowlogd bench lab — ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC`)}</text>`,
    `<text x="12" y="36" fill="#555">${esc(`Linux ${r.machine.kernel}, ${r.machine.cpus} × ${r.machine.cpu}; ${r.rounds} round(s) of ${r.seconds} s; BPF stats on`)}</text>`,
  ];
  variants.forEach((v, i) => {
    const x = 12 + i * 110;
    parts.push(`<rect x="${x}" y="${H - 24}" width="10" height="10" fill="${COLORS[v] ?? '#000'}"/>`);
    parts.push(`<text x="${x + 14}" y="${H - 15}">${esc(v)}</text>`);
  });
  panels.forEach((p, pi) => {
    const x0 = 12 + pi * (panelW + 60);
    const all = r.scenarios
      .flatMap((s) => variants.map((v) => p.value(s, v)))
      .filter((x): x is number => x !== null);
    const max = p.max(all.length ? Math.max(...all) : 1);
    parts.push(`<text x="${x0}" y="${top - 10}" font-weight="bold">${esc(p.title)}</text>`);
    r.scenarios.forEach((s, si) => {
      const y0 = top + si * rowH;
      parts.push(`<text x="${x0}" y="${y0 + 12}" font-weight="bold">${esc(s.name)}</text>`);
      variants.forEach((v, vi) => {
        const val = p.value(s, v);
        const y = y0 + 16 + vi * 16;
        parts.push(`<text x="${x0 + left - 6}" y="${y + 10}" text-anchor="end" fill="#333">${esc(v)}</text>`);
        if (val === null) {
          parts.push(`<text x="${x0 + left}" y="${y + 10}" fill="#999">–</text>`);
          return;
        }
        const w = Math.max(1, (Math.max(0, val) / max) * barMax);
        parts.push(
          `<rect x="${x0 + left}" y="${y}" width="${w.toFixed(1)}" height="12" fill="${COLORS[v] ?? '#000'}"/>`,
        );
        parts.push(`<text x="${(x0 + left + w + 4).toFixed(1)}" y="${y + 10}">${esc(p.label(val))}</text>`);
      });
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
