/* SPDX-License-Identifier: Apache-2.0 */
/* Every map of the flow programs; names are mirrored in addon/src/datapath.cc. */
#ifndef FLOWLOGD_MAPS_H
#define FLOWLOGD_MAPS_H

#include "flow_record.h"

/*
 * Two generations of the flow table. Programs write to flows_gen[generation & 1]; the
 * addon flips `generation`, waits for programs still running on the old one, then
 * drains the old one with batched lookup-and-delete while nobody writes to it. A
 * single map drained in place would lose the increments of a packet that looked an
 * entry up just before the drain deleted it.
 * max_entries is set by the addon before load.
 */
#ifdef FLOW_BENCH_PERCPU
#define FLOW_MAP_TYPE BPF_MAP_TYPE_PERCPU_HASH /* benchmark variant only */
#else
#define FLOW_MAP_TYPE BPF_MAP_TYPE_HASH
#endif

#define FLOW_MAP_DEF(name)                                                                         \
	struct {                                                                                   \
		__uint(type, FLOW_MAP_TYPE);                                                       \
		__uint(max_entries, 65536);                                                        \
		__type(key, struct flow_key);                                                      \
		__type(value, struct flow_counters);                                               \
	} name SEC(".maps")

FLOW_MAP_DEF(flows_0);
FLOW_MAP_DEF(flows_1);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} flow_stats SEC(".maps");

#endif
