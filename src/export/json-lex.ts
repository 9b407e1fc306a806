// The JSON lexing tables and checks the transcoder (json-msgpack.ts) scans with: which
// bytes stand for themselves in a string, the one-letter escapes, \u hex digits, and
// well-formed UTF-8 sequences (what is not well-formed is declined, as JSON.parse of the
// decoded text would see U+FFFD instead).

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** 0 for a byte that stands for itself in a JSON string: ASCII but '"', '\\' and controls. */
export const PLAIN: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(1);
  for (let c = 0x20; c < 0x80; c++) t[c] = 0;
  t[0x22] = 1;
  t[0x5c] = 1;
  return t;
})();

/** The byte each one-letter escape stands for; 0xff: not an escape. */
export const ESCAPES: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(0xff);
  t[0x22] = 0x22; // \"
  t[0x5c] = 0x5c; // \\
  t[0x2f] = 0x2f; // \/
  t[0x62] = 0x08; // \b
  t[0x66] = 0x0c; // \f
  t[0x6e] = 0x0a; // \n
  t[0x72] = 0x0d; // \r
  t[0x74] = 0x09; // \t
  return t;
})();

function hexDigit(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

export function hex4(src: Buffer, j: number, end: number): number {
  if (j + 4 > end) return -1;
  const a = hexDigit(src[j]);
  const b = hexDigit(src[j + 1]);
  const c = hexDigit(src[j + 2]);
  const d = hexDigit(src[j + 3]);
  return a < 0 || b < 0 || c < 0 || d < 0 ? -1 : (a << 12) | (b << 8) | (c << 4) | d;
}

/** Bytes of the well-formed UTF-8 sequence at `j` (lead byte >= 0x80), 0 if it is not one. */
export function utf8Length(src: Buffer, j: number): number {
  const c = src[j]!;
  const cont = (k: number) => ((src[j + k] ?? 0) & 0xc0) === 0x80;
  if (c < 0xc2) return 0;
  if (c < 0xe0) return cont(1) ? 2 : 0;
  const c1 = src[j + 1] ?? 0;
  if (c < 0xf0) {
    const lo = c === 0xe0 ? 0xa0 : 0x80;
    const hi = c === 0xed ? 0x9f : 0xbf;
    return c1 >= lo && c1 <= hi && cont(2) ? 3 : 0;
  }
  if (c < 0xf5) {
    const lo = c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xf4 ? 0x8f : 0xbf;
    return c1 >= lo && c1 <= hi && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}
