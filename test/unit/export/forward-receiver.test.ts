// The test receiver's framing (src/lab/forward-receiver.ts): it cuts the stream into
// MessagePack values by walking their headers, so every type's length must be right
// and every split of the stream must give the same values.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { addExtension, Packr, unpackMultiple } from 'msgpackr';
import { ForwardReceiver, Frames, msgpackWalk } from '../../../src/lab/forward-receiver.ts';

class Ext3 {
  readonly b: Buffer;
  constructor(b: Buffer) {
    this.b = b;
  }
}
addExtension({
  Class: Ext3,
  type: 9,
  pack: (x: Ext3) => x.b,
  unpack: (b: Buffer) => new Ext3(Buffer.from(b)),
});

// variableMapSize: fixmap, map 16 and map 32 by size (the default writes every map as map 16).
const packr = new Packr({ useRecords: false, variableMapSize: true });
const map = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
// One of each MessagePack type and length class.
const VALUES: unknown[] = [
  null,
  true,
  false,
  7,
  -7,
  200,
  -100,
  40_000,
  -40_000,
  3_000_000_000,
  -3_000_000_000,
  2 ** 53 - 1,
  1.5,
  'a',
  'x'.repeat(40),
  'y'.repeat(300),
  'z'.repeat(70_000),
  Buffer.alloc(10, 1),
  Buffer.alloc(300, 2),
  Buffer.alloc(70_000, 3),
  new Ext3(Buffer.from([1])),
  new Ext3(Buffer.from([1, 2])),
  new Ext3(Buffer.from([1, 2, 3])),
  new Ext3(Buffer.alloc(8, 4)),
  new Ext3(Buffer.alloc(16, 5)),
  new Ext3(Buffer.alloc(100, 6)),
  new Ext3(Buffer.alloc(300, 7)),
  new Ext3(Buffer.alloc(70_000, 8)),
  [1, [2, [3, 'four']], {}],
  Array.from({ length: 20 }, (_, i) => i),
  Array.from({ length: 70_000 }, () => 0),
  map(3),
  map(20),
  map(70_000),
  ['calico.flowlogs', Buffer.alloc(1 << 20, 9), { chunk: 'abc', size: 8192 }],
];

test('msgpackWalk: the end of every type, and every prefix incomplete, never walked past the true end', () => {
  for (const v of VALUES) {
    const b = packr.pack(v);
    assert.deepEqual(msgpackWalk(b, 0, b.length, 1), [b.length, 0], JSON.stringify(v)?.slice(0, 40));
    // After other bytes too: the end is an offset, not a length.
    const c = Buffer.concat([Buffer.from([0xc0, 0xc0]), b, Buffer.from([0xc3])]);
    assert.deepEqual(msgpackWalk(c, 2, c.length, 1), [2 + b.length, 0]);
    const cuts = Math.min(b.length, 400); // every prefix of a short value, 400 of a long one
    for (let i = 0; i < cuts; i++) {
      const at = b.length < 400 ? i : Math.floor((i * b.length) / cuts);
      // Incomplete: values still to walk, or a payload past what has arrived; and the
      // position reached is never past where the value really ends.
      const [pos, todo] = msgpackWalk(b, 0, at, 1);
      assert.ok(
        (todo > 0 || pos > at) && pos <= b.length,
        `${typeof v} cut at ${at} of ${b.length}: ${pos}, ${todo}`,
      );
    }
  }
  assert.throws(() => msgpackWalk(Buffer.from([0xc1]), 0, 1, 1), /0xc1 is not a MessagePack type/);
});

test('Frames: any split of the stream gives the same values as decoding it whole', () => {
  const stream = Buffer.concat(VALUES.map((v) => packr.pack(v)));
  const whole = unpackMultiple(stream);
  for (const size of [1, 7, 4096, 65_536, 1 << 20]) {
    const frames = new Frames();
    const got: unknown[] = [];
    for (let i = 0; i < stream.length; i += size)
      for (const f of frames.push(stream.subarray(i, i + size))) got.push(packr.unpack(Buffer.from(f)));
    assert.equal(got.length, VALUES.length, `chunks of ${size}`);
    assert.deepEqual(got, whole, `chunks of ${size}`);
  }
});

test('ForwardReceiver: what it keeps outlives the buffer its frames are views of', async () => {
  // Message mode, [tag, time, record]: the records' bin values, read in separate chunks.
  const rx = new ForwardReceiver();
  const port = await rx.listen();
  const sock = net.connect(port, '127.0.0.1');
  try {
    await new Promise((r) => sock.once('connect', r));
    for (const fill of [0x41, 0x5a]) {
      sock.write(packr.pack(['t', 1, { b: Buffer.alloc(4, fill) }]));
      const n = rx.events.length;
      for (let i = 0; i < 200 && rx.events.length === n; i++) await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(
      rx.events.map((e) => Buffer.from(e.record.b as Uint8Array).toString()),
      ['AAAA', 'ZZZZ'],
    );
  } finally {
    sock.destroy();
    await rx.close();
  }
});
