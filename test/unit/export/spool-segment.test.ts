// The spool frame's checksum: CRC-32C from the addon (hardware and table paths) held to
// published vectors and to the polynomial's bitwise definition, frames of both kinds read
// back, and any flipped byte or unknown kind refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { loadNative } from '../../../src/datapath/native.ts';
import {
  CHECKSUM_CRC32,
  CHECKSUM_CRC32C,
  crc32cJs,
  defaultChecksum,
  encodeHeader,
  HEADER_BYTES,
  readFrame,
  scanSegment,
} from '../../../src/export/spool-segment.ts';

const native = loadNative();
const BOOT = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

/** CRC-32C bit by bit, straight from the reflected polynomial: nothing shared with the addon. */
function crc32cBits(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

test('crc32c matches RFC 3720 B.4 and the usual check value, on both paths', () => {
  const vectors: [Buffer, number][] = [
    [Buffer.from('123456789'), 0xe3069283],
    [Buffer.alloc(32, 0x00), 0x8a9136aa],
    [Buffer.alloc(32, 0xff), 0x62a8ab43],
    [Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
    [Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
    [Buffer.alloc(0), 0],
  ];
  for (const [data, want] of vectors) {
    assert.equal(native.crc32c(data), want, `crc32c of ${data.toString('hex')}`);
    assert.equal(native.crc32cTable(data), want, `crc32cTable of ${data.toString('hex')}`);
  }
});

test('crc32c equals the bitwise definition at every length and alignment, and continues', () => {
  const big = Buffer.from(Array.from({ length: 4096 + 7 }, (_, i) => (i * 131 + 7) & 0xff));
  for (let off = 0; off < 8; off++) {
    for (let len = 0; len <= 40; len++) {
      const d = big.subarray(off, off + len);
      const want = crc32cBits(d);
      assert.equal(native.crc32c(d), want, `offset ${off} length ${len}`);
      assert.equal(native.crc32cTable(d), want, `table, offset ${off} length ${len}`);
      assert.equal(crc32cJs(d), want, `TypeScript, offset ${off} length ${len}`);
    }
  }
  // Continuing from a prefix's CRC gives the whole buffer's, wherever the cut falls.
  const whole = native.crc32c(big);
  assert.equal(whole, crc32cBits(big));
  for (const cut of [0, 1, 7, 8, 9, 1000, 4096, big.length]) {
    assert.equal(native.crc32c(big.subarray(cut), native.crc32c(big.subarray(0, cut))), whole, `cut ${cut}`);
  }
  assert.throws(() => native.crc32c('abc' as unknown as Uint8Array), /crc32c: data must be a typed array/);
});

function frame(payload: Buffer, kind: number, seq = 42): Buffer {
  return Buffer.concat([encodeHeader(seq, BOOT, 3, 2, payload, kind), payload]);
}

test('new frames carry CRC-32C (kind 1) when the addon is built', () => {
  assert.equal(defaultChecksum, CHECKSUM_CRC32C);
  const p = Buffer.from('{"a":1}\n{"b":2}\n{"c":3}\n');
  const f = Buffer.concat([encodeHeader(7, BOOT, 3, 1, p), p]);
  assert.equal(f[37], 1);
  assert.equal(f.readUInt32BE(40), crc32cBits(p, crc32cBits(f.subarray(0, 40))));
  const r = readFrame(f, 0);
  assert.ok(r);
  assert.deepEqual(
    { seq: r.seq, bootId: r.bootId, count: r.count, level: r.level, bytes: r.bytes },
    { seq: 7, bootId: BOOT, count: 3, level: 1, bytes: p.length },
  );
  assert.equal(r.payload.toString(), p.toString());
});

test('frames of the old format (zlib CRC-32, byte 37 zero) still read', () => {
  const p = Buffer.from('{"old":true}\n');
  const f = frame(p, CHECKSUM_CRC32, 9);
  assert.equal(f[37], 0);
  // Exactly what flowlogd wrote before CRC-32C: the zlib CRC of header then payload.
  assert.equal(f.readUInt32BE(40), crc32(p, crc32(f.subarray(0, 40))));
  const r = readFrame(f, 0);
  assert.equal(r?.seq, 9);
  assert.equal(r?.payload.toString(), p.toString());
});

test('any flipped byte of a frame, of either kind, makes it unreadable', () => {
  const p = Buffer.from('{"x":"flip me"}\n');
  for (const kind of [CHECKSUM_CRC32, CHECKSUM_CRC32C]) {
    const f = frame(p, kind);
    assert.ok(readFrame(f, 0), `kind ${kind} reads unflipped`);
    for (let i = 0; i < f.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const g = Buffer.from(f);
        g[i]! ^= bit;
        assert.equal(readFrame(g, 0), null, `kind ${kind}: byte ${i} bit ${bit} flipped`);
      }
    }
  }
});

test('an unknown checksum kind is refused when written and skipped when read', () => {
  const p = Buffer.from('{}\n');
  assert.throws(() => encodeHeader(1, BOOT, 1, 0, p, 2), /unknown checksum kind 2/);
  // A sound kind-1 frame, then one whose kind byte says 2: scanning stops at the second.
  const good = frame(p, CHECKSUM_CRC32C, 1);
  const odd = frame(p, CHECKSUM_CRC32C, 2);
  odd[37] = 2;
  const scan = scanSegment(Buffer.concat([good, odd]));
  assert.deepEqual(
    scan.frames.map((f) => f.seq),
    [1],
  );
  assert.equal(scan.goodEnd, HEADER_BYTES + p.length);
  assert.equal(scan.badBytes, HEADER_BYTES + p.length);
});
