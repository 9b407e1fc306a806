/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every map of the flow programs; names are mirrored in the addon (addon/src/loader.cc,
 * drainer.cc, stats.cc).
 */
#ifndef FLOWLOGD_MAPS_H
#define FLOWLOGD_MAPS_H

#include "flow_record.h"

/*
 * Two generations of the flow table. Programs write to flows{4,6}_[generation & 1]; the
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

#define FLOW_MAP_DEF(name, key_type)                                                               \
	struct {                                                                                   \
		__uint(type, FLOW_MAP_TYPE);                                                       \
		__uint(max_entries, 65536);                                                        \
		__type(key, key_type);                                                             \
		__type(value, struct flow_counters);                                               \
	} name SEC(".maps")

/* IPv4 connections under the compact key, IPv6 under the full one. */
FLOW_MAP_DEF(flows4_0, struct flow_key4);
FLOW_MAP_DEF(flows4_1, struct flow_key4);
FLOW_MAP_DEF(flows6_0, struct flow_key);
FLOW_MAP_DEF(flows6_1, struct flow_key);

/*
 * Per CPU and generation, the IPv4 connections this CPU counted last, in sets of two ways
 * chosen by a hash of the connection plus the interface index (bpf/include/flow_cache.h): a packet
 * of one of them adds to its slot (plain adds, no hash lookup, no atomics) instead of to its entry
 * in flows4_<generation>. Bursts of one connection are the common case (a TCP window, GRO trains, a
 * UDP stream), and the hash lookup is most of the program's cost (BENCHMARKS.md, datapath). A slot
 * is claimed only after the connection's entry exists (so its first packet always goes through the
 * map: initiator, first-seen), and its counts go to the entry when another connection claims it,
 * or, before a drain, by the addon.
 */
#ifndef FLOW_NO_CACHE
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * FLOW_CACHE_VALUES); /* (generation & 1) * FLOW_CACHE_VALUES + i */
	__type(key, __u32);
	__type(value, struct flow_cache);
} flow_cache SEC(".maps");

/* The same for IPv6 connections, in front of flows6_<generation>. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * FLOW_CACHE6_VALUES); /* (generation & 1) * FLOW_CACHE6_VALUES + i */
	__type(key, __u32);
	__type(value, struct flow_cache6);
} flow_cache6 SEC(".maps");
#endif

/*
 * Packets of connections that found their generation's flow map full (the insert failed),
 * per (interface, protocol, family) and generation: the addon drains them with the flows
 * into one overflow record per interface, protocol and direction (README, "When the
 * kernel map is full"), so the flow logs' sums still equal the traffic. Per CPU: a flood
 * of new connections is when this is written most, from every CPU at once. Its own
 * inserts fail only past OVERFLOW_MAX_ENTRIES (interfaces x protocols in use): those
 * packets stay in the lost counters only.
 */
#define OVERFLOW_MAX_ENTRIES 1024

#define OVERFLOW_MAP_DEF(name)                                                                     \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_PERCPU_HASH);                                            \
		__uint(max_entries, OVERFLOW_MAX_ENTRIES);                                         \
		__type(key, struct overflow_key);                                                  \
		__type(value, struct overflow_counters);                                           \
	} name SEC(".maps")

OVERFLOW_MAP_DEF(flow_overflow_0);
OVERFLOW_MAP_DEF(flow_overflow_1);

/*
 * Ports of fragmented datagrams, from their first fragment, so the later fragments (no
 * L4 header) count under the same connection instead of a port-0 one. LRU: entries of
 * finished datagrams age out without bookkeeping.
 */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;
	__u8 proto;
	__u8 _pad[3];
};

struct frag_ports {
	__u16 sport;
	__u16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
} frag_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} flow_stats SEC(".maps");

#endif
