// The JSON → msgpack transcoder Forward ships with: what it writes must decode to what
// JSON.parse gives, and be msgpackr's own bytes for flowlogd's lines.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr, unpack } from 'msgpackr';
import { defaultTranscoder, encodeEntries, type Transcoder } from '../../../src/export/forward.ts';
import { JsonMsgpack } from '../../../src/export/json-msgpack.ts';
import { AT_SRC, BACKEND, CIP, CLIENT, F1, k0, md, resolverWith, upd } from '../aggregate/helpers.ts';

const packr = new Packr({ useRecords: false });
const NOW = 1_800_000_000;

/** JSON the transcoder takes, each a case that once differed or could. */
const ACCEPTED = [
  '{"a":"\\"\\\\\\/\\b\\f\\n\\r\\t","b":"\\u00e9\\u20ac\\ud83d\\ude00x","c":"\\ud800","d":"\\udc00\\ud800z"}',
  '{"n":[0,-0,1,-1,127,128,255,256,65535,65536,4294967295,4294967296,-32,-33,-128,-129,-32768,-32769,-2147483648,-2147483649]}',
  '{"f":[1.5,-0.25,1e3,1E-7,2.5e+10,123456789012345678,9007199254740993,1e400,-1e400,0.1]}',
  ' { "a" : [ true , false , null ] , "s" : "é€😀" , "e" : { } , "l" : [ ] }\r',
  '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]',
  `{"long":"${'x'.repeat(70_000)}","mid":"${'é'.repeat(200)}"}`,
  '"just a string"',
  '42',
  'null',
];

/** What the transcoder declines (the caller falls back to JSON.parse + msgpackr). */
const DECLINED = [
  '',
  '{',
  '{"a":1,}',
  '[1,]',
  '{"a" 1}',
  '{"a":01}',
  '{"a":1.}',
  '{"a":.5}',
  '{"a":+1}',
  '{"a":-}',
  '{"a":1e}',
  '{"a":tru}',
  '{"a":nul}',
  '{"a":"x\ny"}',
  '{"a":"\\x"}',
  '{"a":"\\u12"}',
  '{"a":"unterminated}',
  '{"a":1} x',
  "{'a':1}",
  '{"0":1}',
  '[[[[',
];

/** Bytes that are not UTF-8 inside a string (JSON.parse of the decoded text would see U+FFFD). */
const BAD_UTF8 = [
  [0x22, 0xff, 0x22],
  [0x22, 0xc3, 0x22],
  [0x22, 0xed, 0xa0, 0x80, 0x22],
  [0x22, 0xc0, 0x80, 0x22],
  [0x22, 0xf0, 0x9f, 0x98],
];

/** The Forward entry of one JSON text, or null when the transcoder declines it. */
function transcode(json: string, now = NOW): Buffer | null {
  const tc = new JsonMsgpack(16);
  const src = Buffer.from(json);
  return tc.entry(src, 0, src.length, now) ? Buffer.from(tc.output()) : null;
}

/** What Forward sent before the transcoder: msgpackr's packing of the parsed line. */
function reference(json: string, now = NOW): Buffer {
  const v = JSON.parse(json) as { end_time?: unknown } | null;
  const t = v?.end_time;
  return Buffer.from(packr.pack([Number.isSafeInteger(t) ? t : now, v]));
}

test('any JSON value: the msgpack decodes to what JSON.parse gives (fast-check)', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), (x) => {
      const json = JSON.stringify(x);
      const out = transcode(json);
      if (out === null) return; // declined: encodeEntries falls back to JSON.parse + msgpackr
      // msgpackr's decoder renames a "__proto__" key (JSON.parse makes it an own
      // property): there the check is against how it decodes msgpackr's own packing.
      const want = json.includes('"__proto__"') ? unpack(reference(json)) : [NOW, JSON.parse(json)];
      assert.deepStrictEqual(unpack(out), want);
    }),
    { numRuns: 3000 },
  );
});

test('any JSON object without integer-like keys: byte for byte msgpackr, and never declined (fast-check)', () => {
  const key = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((k) => !/^[0-9]/.test(k));
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.constantFrom(null, true, false),
      fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.array(tie('v'), { maxLength: 20 }),
      fc.dictionary(key, tie('v'), { maxKeys: 20 }),
    ),
  })).v;
  fc.assert(
    fc.property(
      fc.dictionary(key, value, { maxKeys: 40 }),
      fc.option(fc.integer({ min: 0, max: 2 ** 53 })),
      (o, t) => {
        if (t !== null) o.end_time = t;
        const json = JSON.stringify(o);
        const out = transcode(json);
        assert.ok(out !== null, json);
        assert.deepStrictEqual(out, reference(json));
      },
    ),
    { numRuns: 2000 },
  );
});

test('escapes, surrogate pairs, lone surrogates, numbers and whitespace as JSON.parse reads them', () => {
  for (const json of ACCEPTED) {
    const out = transcode(json);
    assert.ok(out !== null, json.slice(0, 80));
    assert.deepStrictEqual(out, reference(json), json.slice(0, 80));
  }
  // A lone surrogate is U+FFFD, as Buffer and msgpackr write it.
  assert.equal((unpack(transcode('"\\ud800"')!) as unknown[])[1], '\ufffd');
});

test('end_time: an integer at the top level is the entry time; otherwise now', () => {
  const time = (json: string) => (unpack(transcode(json)!) as unknown[])[0];
  assert.equal(time('{"end_time":1700000300}'), 1_700_000_300);
  assert.equal(time('{"end_time":5}'), 5);
  assert.equal(time('{"end_time":-7}'), -7);
  assert.equal(time('{"end_time":1.5}'), NOW);
  assert.equal(time('{"end_time":"1700000300"}'), NOW);
  assert.equal(time('{"x":{"end_time":1700000300}}'), NOW);
  assert.equal(time('{"end_time":1,"end_time":2}'), 2);
  assert.equal(time('{"end_\\u0074ime":9}'), 9);
  assert.equal(time('{"end_time":9007199254740992}'), NOW); // not a safe integer
  assert.equal(time('{"end_time":4294967296}'), 4_294_967_296); // float 64 time, the record moved up
  assert.deepStrictEqual(
    transcode('{"end_time":4294967296,"a":1}'),
    reference('{"end_time":4294967296,"a":1}'),
  );
});

test('invalid JSON and what it does not handle are declined, never mis-encoded', () => {
  for (const json of DECLINED) assert.equal(transcode(json), null, json);
  // Not UTF-8 inside a string (JSON.parse of the decoded text would see U+FFFD).
  const tc = new JsonMsgpack(16);
  for (const bytes of BAD_UTF8) {
    const b = Buffer.from(bytes);
    assert.equal(tc.entry(b, 0, b.length, NOW), false);
  }
  assert.equal(tc.length, 0);
  // Nesting beyond 512.
  assert.equal(transcode(`${'['.repeat(600)}${']'.repeat(600)}`), null);
});

test('encodeEntries: real flowlogd lines are msgpackr bytes; declined lines fall back; bad JSON throws JSON.parse error', () => {
  const a = k0(resolverWith(md));
  for (let i = 0; i < 20; i++)
    a.observe(
      upd({
        key: `c${i}`,
        srcIp: CLIENT,
        dstIp: i % 2 ? CIP : BACKEND,
        srcPort: 40000 + i,
        dstPort: 80,
        ...AT_SRC,
      }),
    );
  const lines = [...a.flushLineIterator(F1)];
  assert.equal(lines.length > 0, true);
  const all = [...lines, '{"0":"integer-like key","end_time":3}', '[1,{"b":null}]'];
  for (const l of all.slice(0, lines.length)) assert.ok(transcode(l) !== null, l);
  const data = Buffer.from(`${all.join('\n')}\n`);
  for (const using of ['js', 'native'] as const) {
    const { entries, size } = encodeEntries(data, NOW, undefined, using);
    assert.equal(size, all.length, using);
    assert.deepStrictEqual(Buffer.from(entries), Buffer.concat(all.map((l) => reference(l))), using);
    assert.throws(() => encodeEntries(Buffer.from('{"a":1}\n{"a":\n'), NOW, undefined, using), SyntaxError);
  }
});

// The addon's transcoder (addon/src/json_msgpack.cc) against this one, through
// encodeEntries: the same bytes and entry count for any input, or the same error.
function both(text: string | Buffer, out?: () => Buffer): void {
  const data = Buffer.from(text);
  const run = (using: Transcoder) => {
    try {
      const { entries, size } = encodeEntries(data, NOW, out?.(), using);
      return { bytes: Buffer.from(entries).toString('hex'), size };
    } catch (err) {
      return { error: (err as Error).name };
    }
  };
  assert.deepStrictEqual(run('native'), run('js'), data.toString('utf8', 0, 120));
}

test('the addon is built here, so Forward ships with its transcoder', () => {
  assert.equal(defaultTranscoder, 'native');
});

test('the addon transcoder writes what the TypeScript one writes: generated JSON lines (fast-check)', () => {
  const key = fc.string({ unit: 'grapheme', maxLength: 12 });
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.constantFrom(null, true, false),
      fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
      fc.double(),
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.array(tie('v'), { maxLength: 20 }),
      fc.dictionary(key, tie('v'), { maxKeys: 20 }),
    ),
  })).v;
  const line = fc.oneof(
    fc.jsonValue({ maxDepth: 6 }).map((x) => JSON.stringify(x)),
    fc
      .tuple(
        fc.dictionary(key, value, { maxKeys: 30 }),
        fc.option(fc.integer({ min: -(2 ** 53), max: 2 ** 53 })),
      )
      .map(([o, t]) => JSON.stringify(t === null ? o : { ...o, end_time: t })),
    fc.string({ unit: 'binary', maxLength: 40 }).map((x) => JSON.stringify(x).replace(/\\\\/g, '\\')),
  );
  fc.assert(
    fc.property(fc.array(line, { minLength: 1, maxLength: 8 }), (lines) => {
      both(`${lines.join('\n')}\n`);
      // A small out buffer: the addon stops for room and the caller grows it.
      both(lines.join('\n'), () => Buffer.alloc(8));
    }),
    { numRuns: 2000 },
  );
});

test('the addon transcoder on the edge cases: escapes, numbers, declines, bad UTF-8, nesting', () => {
  const cases = [
    ...ACCEPTED,
    ...DECLINED,
    '{"f":[1e-400,5e-324,-0.0]}',
    `[${Array.from({ length: 70_000 }, (_, i) => i % 7).join(',')}]`,
    `{"esc":"${'\\n'.repeat(40_000)}"}`,
    '{"end_time":1700000300}\n{"end_time":4294967296,"a":1}\n{"end_time":1.5}\n{"x":{"end_time":7}}\n{"end_\\u0074ime":9}',
    '{"end_time":1,"end_time":"x"}\n{"end_time":9007199254740992}\n{"end_time":-7}',
    '\n\n{"0":1}\n',
    `${'['.repeat(512)}${']'.repeat(512)}`,
    `${'['.repeat(513)}${']'.repeat(513)}`,
    `${'{"a":'.repeat(512)}1${'}'.repeat(512)}`,
  ];
  for (const c of cases) {
    both(c);
    both(`${c}\n${c}\n`, () => Buffer.alloc(1));
  }
  for (const bytes of BAD_UTF8) {
    const b = Buffer.from(bytes);
    both(b);
    both(Buffer.concat([b, Buffer.from('\n'), b]), () => Buffer.alloc(1));
  }
});

test('the addon transcoder keeps the keys of the last line by place: lines of one shape, then keys that differ by a byte, an escape, a depth or their length (fast-check)', () => {
  // Keys as raw JSON: near misses of each other ("a" and "ab" share a prefix, the quote
  // decides), end_time written plainly, escaped and at another depth, and keys around the
  // cache's 32-byte bound (30 and 31 letters: 32 and 33 bytes with quotes).
  const keys = [
    '"end_time"',
    '"end\\u005ftime"',
    '"end_tim"',
    '"end_timee"',
    '"a"',
    '"ab"',
    '"b\\"c"',
    '"é"',
    `"${'x'.repeat(30)}"`,
    `"${'x'.repeat(31)}"`,
    `"${'x'.repeat(29)}y"`,
  ];
  const scalar = fc.oneof(
    fc.integer({ min: -200, max: 300 }).map(String),
    fc.constantFrom('1700000300', '-0', '0', '127', '128', '1e2', '1.5', '"v"', 'null', '""'),
  );
  const object = (depth: number): fc.Arbitrary<string> =>
    fc
      .array(fc.tuple(fc.constantFrom(...keys), depth < 2 ? fc.oneof(scalar, fc.constant(null)) : scalar), {
        maxLength: 6,
      })
      .chain((entries) =>
        fc
          .tuple(
            ...entries.map(([k, v]) =>
              (v === null ? object(depth + 1) : fc.constant(v)).map((x) => `${k}:${x}`),
            ),
          )
          .map((parts) => `{${parts.join(',')}}`),
      );
  fc.assert(
    fc.property(object(0), fc.array(object(0), { maxLength: 3 }), fc.nat(4), (base, others, repeats) => {
      // The same shape again and again (cache hits), then others (misses), then the first.
      const lines = [...Array.from({ length: repeats + 1 }, () => base), ...others, base];
      both(`${lines.join('\n')}\n`);
      both(lines.join('\n'), () => Buffer.alloc(8));
    }),
    { numRuns: 3000 },
  );
  // A line that ends within 32 bytes of a cached key is scanned, not compared past its end.
  both(
    '{"source_namespace":1,"dest_namespace":2}\n{"source_namespace":1,"dest_namespace":2}\n{"source_namespace":1}',
  );
});

test('the addon transcoder finds a string byte that does not stand for itself at every offset of its 16- and 8-byte scans', () => {
  // Each byte the scans must stop at (or pass: 0x7f and ' ' stand for themselves), in a
  // string of plain ASCII at offsets 0..40 and followed by 0..20 more: a missed stop
  // would copy a quote, an escape, a control or bad UTF-8 into the string.
  const stops: number[][] = [
    [0x5c, 0x6e],
    [0x5c, 0x22],
    [0x01],
    [0x1f],
    [0xc3, 0xa9],
    [0xff],
    [0xe2, 0x82, 0xac],
    [0x7f],
    [0x20],
  ];
  let accepted = 0;
  for (const stop of stops)
    for (let at = 0; at <= 40; at++)
      for (const after of [0, 1, 7, 8, 15, 16, 20]) {
        const b = Buffer.from([
          0x7b,
          0x22,
          0x61,
          0x22,
          0x3a,
          0x22,
          ...Buffer.alloc(at, 0x78),
          ...stop,
          ...Buffer.alloc(after, 0x79),
          0x22,
          0x7d,
        ]);
        both(b);
        if (new JsonMsgpack(16).entry(b, 0, b.length, NOW)) accepted++;
      }
  // Accepted: the escapes, é, € and the two plain bytes; declined: the controls and 0xff.
  assert.equal(accepted, 6 * 41 * 7);
});
