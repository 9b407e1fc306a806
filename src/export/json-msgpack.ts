// JSON text to msgpack, byte to byte: the UTF-8 bytes of a JSON value are scanned once
// and the msgpack written straight into one reused output buffer, without building the
// value as JS objects. Forward ships every flow log line as a msgpack map; JSON.parse of
// the line and msgpackr's packing of the object cost ~7 µs a ~1 KB record, and the
// parsed records' garbage collection most of the rest (BENCHMARKS.md, shipping).
//
// The bytes are msgpackr's for the same value (Packr {useRecords: false}): objects as
// map 16 (msgpackr always writes map 16 then patches its count), arrays, strings and
// integers in their smallest form, other numbers as float 64, a lone surrogate escape as
// U+FFFD. What this scanner does not handle the way JSON.parse + msgpackr would, it
// declines (returns false) and the caller falls back to them: a syntax error (so the
// error is JSON.parse's own), bytes that are not UTF-8 inside a string (JSON.parse of
// the decoded text sees U+FFFD), an object key starting with a digit (JavaScript orders
// integer-like keys first), more than 65,535 keys in one object or nesting deeper than
// 512. One difference stays: a key repeated in one object is written twice (JSON.parse
// keeps the last); msgpack decoders (msgpackr, Python's) also keep the last, so the
// decoded object is the same.

import { ESCAPES, hex4, isDigit, PLAIN, utf8Length } from './json-lex.ts';

const MAX_DEPTH = 512;

/**
 * Bytes an entry of `n` bytes of JSON may take at most: "9e9" (3 bytes) is a float 64
 * (9); the entry header and time. The addon's forward_entry_room is the same bound.
 */
export function entryRoom(n: number): number {
  return 3 * n + 32;
}
const END_TIME = Buffer.from('end_time');

export class JsonMsgpack {
  #src: Buffer = Buffer.alloc(0);
  #i = 0;
  #end = 0;
  #out: Buffer;
  #o = 0;
  #view: DataView;
  /** The top-level object's end_time when it is a number, else NaN. */
  #endTime = Number.NaN;

  constructor(initialBytes = 1 << 20) {
    this.#out = Buffer.allocUnsafe(initialBytes);
    this.#view = new DataView(this.#out.buffer, this.#out.byteOffset, this.#out.byteLength);
  }

  /** Bytes written so far; the output is `output()`'s first `length` bytes. */
  get length(): number {
    return this.#o;
  }

  /** The msgpack written since the last reset(); valid until the next write or reset. */
  output(): Buffer {
    return this.#out.subarray(0, this.#o);
  }

  /** Starts again, empty; with `out`, writing into it from now on (it grows into a new buffer when too small). */
  reset(out?: Buffer): void {
    this.#o = 0;
    if (out !== undefined && out !== this.#out) {
      this.#out = out;
      this.#view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    }
  }

  /** The buffer written into (the one given to reset(), or a bigger one it grew into). */
  get buffer(): Buffer {
    return this.#out;
  }

  /**
   * Appends the Forward entry `[time, record]` of the JSON line `src[start, end)`, time =
   * the record's integer end_time, else `nowSec`. False (nothing appended) when the
   * line is not one this scanner handles (see the top of the file).
   */
  entry(src: Buffer, start: number, end: number, nowSec: number): boolean {
    const at = this.#o;
    this.#reserve(entryRoom(end - start));
    this.#src = src;
    this.#i = start;
    this.#end = end;
    this.#endTime = Number.NaN;
    const out = this.#out;
    out[at] = 0x92;
    // The time goes before the record but is known after it: the record is written after
    // a 5-byte slot (an integer time of this century is a uint 32) and moved if need be.
    this.#o = at + 6;
    let ok = this.#value(0);
    if (ok) {
      this.#ws();
      ok = this.#i === end;
    }
    if (!ok) {
      this.#o = at;
      return false;
    }
    const recEnd = this.#o;
    const t = this.#endTime;
    const time = Number.isSafeInteger(t) ? t : nowSec;
    const timeEnd = at + 1 + numberLength(time);
    if (timeEnd !== at + 6) {
      this.#reserve(16);
      this.#out.copyWithin(timeEnd, at + 6, recEnd);
    }
    this.#o = at + 1;
    this.#number(time);
    this.#o = timeEnd + (recEnd - (at + 6));
    return true;
  }

  /** Appends bytes made elsewhere (a fallback entry). */
  append(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#out.set(b, this.#o);
    this.#o += b.length;
  }

  /** Makes room for `n` more bytes after length (the buffer may be replaced: read `buffer` again). */
  reserve(n: number): void {
    this.#reserve(n);
  }

  /** Sets the bytes in use after someone else (the addon's transcoder) wrote into `buffer`. */
  setLength(n: number): void {
    if (n < 0 || n > this.#out.length) throw new RangeError(`length ${n} is outside the buffer`);
    this.#o = n;
  }

  #reserve(n: number): void {
    if (this.#o + n <= this.#out.length) return;
    let size = this.#out.length * 2;
    while (size < this.#o + n) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.#out.copy(bigger, 0, 0, this.#o);
    this.#out = bigger;
    this.#view = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
  }

  #ws(): void {
    const src = this.#src;
    let i = this.#i;
    while (i < this.#end) {
      const c = src[i]!;
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) break;
      i++;
    }
    this.#i = i;
  }

  #value(depth: number): boolean {
    this.#ws();
    if (this.#i >= this.#end) return false;
    const c = this.#src[this.#i]!;
    if (c === 0x22) return this.#string();
    if (c === 0x7b) return depth < MAX_DEPTH && this.#object(depth + 1);
    if (c === 0x5b) return depth < MAX_DEPTH && this.#array(depth + 1);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.#numberToken(false);
    if (c === 0x74) return this.#literal(0x65757274, 0xc3); // "true", as u32 little-endian
    if (c === 0x66) return this.#literal5();
    if (c === 0x6e) return this.#literal(0x6c6c756e, 0xc0); // "null"
    return false;
  }

  #literal(word: number, byte: number): boolean {
    const i = this.#i;
    if (i + 4 > this.#end || this.#src.readUInt32LE(i) !== word) return false;
    this.#i = i + 4;
    this.#out[this.#o++] = byte;
    return true;
  }

  #literal5(): boolean {
    const i = this.#i;
    // "false": 'f' then "alse" as u32 little-endian.
    if (i + 5 > this.#end || this.#src.readUInt32LE(i + 1) !== 0x65736c61) return false;
    this.#i = i + 5;
    this.#out[this.#o++] = 0xc2;
    return true;
  }

  #object(depth: number): boolean {
    const src = this.#src;
    this.#i++; // '{'
    const head = this.#o;
    this.#out[head] = 0xde;
    this.#o = head + 3;
    let n = 0;
    this.#ws();
    if (this.#i < this.#end && src[this.#i] === 0x7d) {
      this.#i++;
    } else {
      for (;;) {
        this.#ws();
        if (this.#i >= this.#end || src[this.#i] !== 0x22) return false;
        const c1 = src[this.#i + 1]!;
        if (c1 >= 0x30 && c1 <= 0x39) return false; // maybe integer-like: JS orders those first
        const keyAt = this.#o;
        if (!this.#string()) return false;
        const isEndTime = depth === 1 && this.#isEndTime(keyAt);
        this.#ws();
        if (this.#i >= this.#end || src[this.#i] !== 0x3a) return false;
        this.#i++;
        if (isEndTime) {
          this.#ws();
          // The last end_time wins, as in JSON.parse; only a number is a time.
          const c = src[this.#i] ?? 0;
          this.#endTime = Number.NaN;
          if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
            if (!this.#numberToken(true)) return false;
          } else if (!this.#value(depth)) return false;
        } else if (!this.#value(depth)) return false;
        n++;
        this.#ws();
        if (this.#i >= this.#end) return false;
        const c = src[this.#i++];
        if (c === 0x7d) break;
        if (c !== 0x2c) return false;
      }
    }
    if (n > 0xffff) return false;
    this.#out[head + 1] = n >> 8;
    this.#out[head + 2] = n & 0xff;
    return true;
  }

  /** The key just written at `at` (a str header then bytes) is "end_time". */
  #isEndTime(at: number): boolean {
    const out = this.#out;
    if (out[at] !== (0xa0 | 8)) return false;
    for (let k = 0; k < 8; k++) if (out[at + 1 + k] !== END_TIME[k]) return false;
    return true;
  }

  #array(depth: number): boolean {
    const src = this.#src;
    this.#i++; // '['
    const head = this.#o;
    this.#o = head + 1;
    let n = 0;
    this.#ws();
    if (this.#i < this.#end && src[this.#i] === 0x5d) {
      this.#i++;
    } else {
      for (;;) {
        if (!this.#value(depth)) return false;
        n++;
        this.#ws();
        if (this.#i >= this.#end) return false;
        const c = src[this.#i++];
        if (c === 0x5d) break;
        if (c !== 0x2c) return false;
      }
    }
    if (n < 0x10) {
      this.#out[head] = 0x90 | n;
      return true;
    }
    // Longer arrays need a bigger header: move the elements up.
    const grow = n < 0x10000 ? 2 : 4;
    this.#reserve(grow);
    const out = this.#out;
    out.copyWithin(head + 1 + grow, head + 1, this.#o);
    this.#o += grow;
    if (grow === 2) {
      out[head] = 0xdc;
      out[head + 1] = n >> 8;
      out[head + 2] = n & 0xff;
    } else {
      out[head] = 0xdd;
      out.writeUInt32BE(n, head + 1);
    }
    return true;
  }

  /** A JSON number token, validated; `endTime`: also remember its value as end_time. */
  #numberToken(endTime: boolean): boolean {
    const src = this.#src;
    const end = this.#end;
    const s = this.#i;
    let i = s;
    const neg = src[i] === 0x2d;
    if (neg) i++;
    if (i >= end) return false;
    const c = src[i]!;
    let v = 0;
    if (c === 0x30) {
      i++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (i < end && isDigit(src[i]!)) {
        v = v * 10 + (src[i]! - 0x30);
        i++;
      }
    } else return false;
    let simple = i - s - (neg ? 1 : 0) <= 15; // exact as a double
    if (i < end && src[i] === 0x2e) {
      simple = false;
      i++;
      const d = i;
      while (i < end && isDigit(src[i]!)) i++;
      if (i === d) return false;
    }
    if (i < end && (src[i] === 0x65 || src[i] === 0x45)) {
      simple = false;
      i++;
      if (i < end && (src[i] === 0x2b || src[i] === 0x2d)) i++;
      const d = i;
      while (i < end && isDigit(src[i]!)) i++;
      if (i === d) return false;
    }
    this.#i = i;
    // Beyond 15 digits, a fraction or an exponent: the engine's correctly rounded parse.
    const value = simple ? (neg ? -v : v) : Number(src.toString('latin1', s, i));
    if (endTime) this.#endTime = value;
    this.#number(value);
    return true;
  }

  /** A number as msgpackr writes it (useRecords false: positive fixint up to 127). */
  #number(value: number): void {
    const out = this.#out;
    let o = this.#o;
    if (value >>> 0 === value) {
      if (value < 0x80) out[o++] = value;
      else if (value < 0x100) {
        out[o++] = 0xcc;
        out[o++] = value;
      } else if (value < 0x10000) {
        out[o++] = 0xcd;
        out[o++] = value >> 8;
        out[o++] = value & 0xff;
      } else {
        out[o++] = 0xce;
        this.#view.setUint32(o, value);
        o += 4;
      }
    } else if (value >> 0 === value) {
      if (value >= -0x20) out[o++] = 0x100 + value;
      else if (value >= -0x80) {
        out[o++] = 0xd0;
        out[o++] = value + 0x100;
      } else if (value >= -0x8000) {
        out[o++] = 0xd1;
        this.#view.setInt16(o, value);
        o += 2;
      } else {
        out[o++] = 0xd2;
        this.#view.setInt32(o, value);
        o += 4;
      }
    } else {
      out[o++] = 0xcb;
      this.#view.setFloat64(o, value);
      o += 8;
    }
    this.#o = o;
  }

  /** A JSON string at #i (its opening quote) as a msgpack str. */
  #string(): boolean {
    const src = this.#src;
    const end = this.#end;
    const s = this.#i + 1;
    let j = s;
    for (;;) {
      // Plain ASCII in one tight loop; it stops at the line's end too (a '\n', or past
      // the buffer: undefined is not 0).
      while (PLAIN[src[j]!] === 0) j++;
      if (j >= end) return false;
      const c = src[j]!;
      if (c === 0x22) break;
      if (c === 0x5c) return this.#escapedString(s);
      if (c < 0x20) return false;
      const n = utf8Length(src, j);
      if (n === 0) return false;
      j += n;
    }
    const len = j - s;
    this.#strHeader(len);
    const out = this.#out;
    let o = this.#o;
    if (len < 24) for (let k = s; k < j; k++) out[o++] = src[k]!;
    else o += src.copy(out, o, s, j);
    this.#o = o;
    this.#i = j + 1;
    return true;
  }

  #strHeader(len: number): void {
    const out = this.#out;
    if (len < 0x20) out[this.#o++] = 0xa0 | len;
    else if (len < 0x100) {
      out[this.#o++] = 0xd9;
      out[this.#o++] = len;
    } else if (len < 0x10000) {
      out[this.#o++] = 0xda;
      out[this.#o++] = len >> 8;
      out[this.#o++] = len & 0xff;
    } else {
      out[this.#o++] = 0xdb;
      this.#view.setUint32(this.#o, len);
      this.#o += 4;
    }
  }

  /** A string with escapes, from its first byte `s`: decoded after a 5-byte header slot, then moved down. */
  #escapedString(s: number): boolean {
    const src = this.#src;
    const end = this.#end;
    const out = this.#out;
    const head = this.#o;
    let o = head + 5;
    let j = s;
    for (;;) {
      if (j >= end) return false;
      const c = src[j]!;
      if (c === 0x22) break;
      if (c < 0x20) return false;
      if (c === 0x5c) {
        if (j + 1 >= end) return false;
        const e = src[j + 1]!;
        j += 2;
        if (e === 0x75) {
          let cu = hex4(src, j, end);
          if (cu < 0) return false;
          j += 4;
          if (cu >= 0xd800 && cu <= 0xdbff && src[j] === 0x5c && src[j + 1] === 0x75) {
            const lo = hex4(src, j + 2, end);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
              j += 6;
              cu = 0x10000 + ((cu - 0xd800) << 10) + (lo - 0xdc00);
            }
          }
          if (cu < 0x80) out[o++] = cu;
          else if (cu < 0x800) {
            out[o++] = 0xc0 | (cu >> 6);
            out[o++] = 0x80 | (cu & 0x3f);
          } else if (cu >= 0xd800 && cu <= 0xdfff) {
            // A lone surrogate has no UTF-8 form: U+FFFD, as Buffer, TextEncoder and msgpackr write it.
            out[o++] = 0xef;
            out[o++] = 0xbf;
            out[o++] = 0xbd;
          } else if (cu < 0x10000) {
            out[o++] = 0xe0 | (cu >> 12);
            out[o++] = 0x80 | ((cu >> 6) & 0x3f);
            out[o++] = 0x80 | (cu & 0x3f);
          } else {
            out[o++] = 0xf0 | (cu >> 18);
            out[o++] = 0x80 | ((cu >> 12) & 0x3f);
            out[o++] = 0x80 | ((cu >> 6) & 0x3f);
            out[o++] = 0x80 | (cu & 0x3f);
          }
          continue;
        }
        const b = ESCAPES[e] ?? 0xff;
        if (b === 0xff) return false;
        out[o++] = b;
        continue;
      }
      if (c < 0x80) {
        out[o++] = c;
        j++;
      } else {
        const n = utf8Length(src, j);
        if (n === 0) return false;
        for (let k = 0; k < n; k++) out[o++] = src[j + k]!;
        j += n;
      }
    }
    const len = o - head - 5;
    this.#o = head;
    this.#strHeader(len);
    out.copyWithin(this.#o, head + 5, o);
    this.#o += len;
    this.#i = j + 1;
    return true;
  }
}

/** Bytes #number() writes for `value`. */
function numberLength(value: number): number {
  if (value >>> 0 === value) return value < 0x80 ? 1 : value < 0x100 ? 2 : value < 0x10000 ? 3 : 5;
  if (value >> 0 === value) return value >= -0x20 ? 1 : value >= -0x80 ? 2 : value >= -0x8000 ? 3 : 5;
  return 9;
}
