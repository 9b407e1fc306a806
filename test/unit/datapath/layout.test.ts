// src/datapath/layout.ts must agree with bpf/include/flow_record.h as the addon
// (offsetof) and the eBPF object (BTF) see it. Fails on any drift.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  CT_EVENT_DESTROY,
  CT_EVENT_DUMP,
  CT_EVENT_DUMP_DONE,
  CT_EVENT_NEW,
  CT_FLAG_AFTER_OVERRUN,
  CT_FLAG_COUNTERS,
  CT_FLAG_SYNTHETIC,
  CtRecord,
  CtTuple,
  CycleRecord,
  FlowCounters,
  FlowKey,
  RING_RECORD_CONNTRACK,
  RING_RECORD_CYCLE,
  RING_RECORD_FLOW,
  RING_RECORD_OVERFLOW,
  RING_RECORD_SIZE,
  Ring,
} from '../../../src/datapath/layout.ts';
import { loadNative } from '../../../src/datapath/native.ts';

const BPF_OBJECT = fileURLToPath(new URL('../../../bpf/.output/flow_tc.bpf.o', import.meta.url));
const DROP_OBJECT = fileURLToPath(new URL('../../../bpf/.output/drop_trace.bpf.o', import.meta.url));

function tsTable(): Record<string, number> {
  const t: Record<string, number> = {
    RING_RECORD_SIZE,
    RING_RECORD_FLOW,
    'ring.type': Ring.type,
    'ring.key': Ring.key,
    'ring.counters': Ring.counters,
    'ring.drop_reason': Ring.drop_reason,
    'ring.pad2': Ring.pad2,
    RING_RECORD_CYCLE,
    RING_RECORD_CONNTRACK,
    RING_RECORD_OVERFLOW,
    CT_EVENT_NEW,
    CT_EVENT_DESTROY,
    CT_EVENT_DUMP,
    CT_EVENT_DUMP_DONE,
    CT_FLAG_SYNTHETIC,
    CT_FLAG_COUNTERS,
    CT_FLAG_AFTER_OVERRUN,
  };
  for (const [k, v] of Object.entries(FlowKey)) t[`key.${k}`] = v;
  for (const [k, v] of Object.entries(FlowCounters)) t[`counters.${k}`] = v;
  for (const [k, v] of Object.entries(CtRecord)) t[`ct.${k}`] = v;
  for (const [k, v] of Object.entries(CtTuple)) t[`tuple.${k}`] = v;
  for (const [k, v] of Object.entries(CycleRecord)) t[`cycle.${k}`] = v;
  return t;
}

test("TypeScript offsets equal the addon's offsetof() of flow_record.h", () => {
  assert.deepEqual(tsTable(), loadNative().layout);
});

/** Member byte offsets and struct sizes of `name` from the object's BTF. */
function btfStruct(dump: string, name: string): Record<string, number> {
  const lines = dump.split('\n');
  const start = lines.findIndex((l) => l.includes(`STRUCT '${name}' size=`));
  assert.ok(start >= 0, `struct ${name} in the BPF object's BTF`);
  const out: Record<string, number> = { size: Number(/size=(\d+)/.exec(lines[start]!)![1]) };
  for (const l of lines.slice(start + 1)) {
    const m = /^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)/.exec(l);
    if (!m) break;
    if (!m[1]!.startsWith('_')) out[m[1]!] = Number(m[2]) / 8;
  }
  return out;
}

test('TypeScript offsets equal the BTF of the compiled eBPF object', () => {
  const dump = execFileSync('bpftool', ['btf', 'dump', 'file', BPF_OBJECT, 'format', 'raw'], {
    encoding: 'utf8',
  });
  assert.deepEqual(btfStruct(dump, 'flow_key'), FlowKey);
  assert.deepEqual(btfStruct(dump, 'flow_counters'), FlowCounters);
});

test('the drop tracing object keys drops by the same flow_key', () => {
  const dump = execFileSync('bpftool', ['btf', 'dump', 'file', DROP_OBJECT, 'format', 'raw'], {
    encoding: 'utf8',
  });
  assert.deepEqual(btfStruct(dump, 'flow_key'), FlowKey);
  assert.deepEqual(btfStruct(dump, 'flow_counters'), FlowCounters);
  assert.deepEqual(btfStruct(dump, 'drop_key'), { flow: 0, reason: FlowKey.size, size: FlowKey.size + 4 });
});
