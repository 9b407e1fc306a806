// Byte offsets of the ring records defined in bpf/include/flow_record.h. Checked against
// the addon's offsetof() table and the BPF object's BTF by
// test/unit/datapath/layout.test.ts: edit both sides together.

export const RING_RECORD_SIZE = 128;
export const RING_RECORD_FLOW = 1;
export const RING_RECORD_CONNTRACK = 2;
export const RING_RECORD_OVERFLOW = 3;
export const RING_RECORD_CYCLE = 4;

export const Ring = {
  type: 0,
  key: 8,
  counters: 56,
  drop_reason: 120,
  /** Journal frames: the generation of the frame's cycle (addon/src/journal.h). */
  pad2: 124,
} as const;

/** struct ring_cycle_record: the end of a drain cycle, in the ring and in the journal. */
export const CycleRecord = {
  generation: 8,
  records: 16,
  cycle: 24,
  segment_closed: 32,
} as const;

/** struct ring_conntrack_record */
export const CtRecord = {
  event: 8,
  proto: 9,
  family: 10,
  flags: 11,
  id: 12,
  orig: 16,
  reply: 52,
  packets: 88,
  bytes: 104,
  time_ns: 120,
} as const;

/** struct ct_tuple */
export const CtTuple = {
  src: 0,
  dst: 16,
  sport: 32,
  dport: 34,
  size: 36,
} as const;

export const CT_EVENT_NEW = 1;
export const CT_EVENT_DESTROY = 2;
export const CT_EVENT_DUMP = 3;
export const CT_EVENT_DUMP_DONE = 4;
export const CT_FLAG_SYNTHETIC = 0x01;
export const CT_FLAG_COUNTERS = 0x02;
export const CT_FLAG_AFTER_OVERRUN = 0x04;

export const FlowKey = {
  ifindex: 0,
  addr_a: 4,
  addr_b: 20,
  port_a: 36,
  port_b: 38,
  proto: 40,
  family: 41,
  size: 44,
} as const;

export const FlowCounters = {
  packets: 0,
  bytes: 16,
  first_seen_ns: 32,
  last_seen_ns: 40,
  tcp_flags: 48,
  initiator: 52,
  initiator_how: 53,
  first_hook: 54,
  first_dir: 55,
  icmp_type: 56,
  icmp_code: 57,
  size: 64,
} as const;
