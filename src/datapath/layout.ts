// Byte offsets of the ring records defined in bpf/include/flow_record.h. Checked against
// the addon's offsetof() table and the BPF object's BTF by
// test/unit/datapath/layout.test.ts: edit both sides together.

export const RING_RECORD_SIZE = 128;
export const RING_RECORD_FLOW = 1;

export const Ring = {
  type: 0,
  key: 8,
  counters: 56,
} as const;

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
