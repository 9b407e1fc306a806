/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-CPU caches of recently counted connections in front of flows4_<generation>
 * and flows6_<generation> (maps.h flow_cache and flow_cache6, flow_record.h struct
 * flow_cache_slot and flow_cache_slot6; the operations in flow_cache_ops.h): a packet
 * of a connection its set holds adds to the slot with plain adds; a slot is claimed
 * only after the connection's entry exists, and its counts go to the entry when another
 * connection takes the slot, or from the addon before it drains the generation.
 * Included by flow_tc.bpf.c only.
 */
#ifndef FLOWLOGD_FLOW_CACHE_H
#define FLOWLOGD_FLOW_CACHE_H

#include "flow_entry.h"

#ifndef FLOW_NO_CACHE
#ifndef FLOW_CACHE_KEEP_NS
#define FLOW_CACHE_KEEP_NS 20000000ull /* 20 ms: five ticks of the coarse clock at HZ=250 */
#endif

/*
 * The first of the FLOW_CACHE_WAYS slots of the set `k` maps to, in generation `gen`:
 * set h lives in value gen * FLOW_CACHE_VALUES + h / sets-a-value of the per-CPU array
 * (a per-CPU value holds at most 32 KiB).
 */
static __always_inline struct flow_cache_slot *cache_set4(__u32 gen, const struct flow_key4 *k)
{
	const __u32 per_value = FLOW_CACHE_SLOTS / FLOW_CACHE_WAYS;
	struct flow_cache *cache;
	__u32 h, idx;

	h = k->addr_a * 0x85ebca77u;
	h ^= k->addr_b * 0xc2b2ae3du;
	h ^= (((__u32)k->port_a << 16) | k->port_b) * 0x27d4eb2fu;
	h ^= k->proto;
	/* The interface is added, not hashed: a packet crosses two veths (ingress on one,
	 * egress on the other, on the same CPU), and their ifindexes, created together,
	 * differ by a few, so one connection's two keys land in different sets instead of
	 * sharing one. */
	h = ((h ^ (h >> 16)) + k->ifindex) & (FLOW_CACHE_SETS - 1);
	idx = gen * FLOW_CACHE_VALUES + h / per_value;
	cache = bpf_map_lookup_elem(&flow_cache, &idx);
	if (!cache)
		return 0;
	return &cache->slot[(h % per_value) * FLOW_CACHE_WAYS];
}

static __always_inline int same_key4(const struct flow_key4 *a, const struct flow_key4 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* The IPv6 set of `k`, as cache_set4 (the four words of each address folded in). */
static __always_inline struct flow_cache_slot6 *cache_set6(__u32 gen, const struct flow_key *k)
{
	const __u32 per_value = FLOW_CACHE6_SLOTS / FLOW_CACHE_WAYS;
	const __u32 *a = (const __u32 *)k->addr_a, *b = (const __u32 *)k->addr_b;
	struct flow_cache6 *cache;
	__u32 h, idx;

	h = (a[0] ^ a[1] ^ a[2] ^ a[3]) * 0x85ebca77u;
	h ^= (b[0] ^ b[1] ^ b[2] ^ b[3]) * 0xc2b2ae3du;
	h ^= (((__u32)k->port_a << 16) | k->port_b) * 0x27d4eb2fu;
	h ^= k->proto;
	h = ((h ^ (h >> 16)) + k->ifindex) & (FLOW_CACHE6_SETS - 1);
	idx = gen * FLOW_CACHE6_VALUES + h / per_value;
	cache = bpf_map_lookup_elem(&flow_cache6, &idx);
	if (!cache)
		return 0;
	return &cache->slot[(h % per_value) * FLOW_CACHE_WAYS];
}

/* The whole 44-byte key, pads included (keys are built zeroed). */
static __always_inline int same_key6(const struct flow_key *a, const struct flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 d = 0;

#pragma unroll
	for (int i = 0; i < 11; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

#define CACHE_SLOT flow_cache_slot
#define CACHE_KEY flow_key4
#define CACHE_FN(name) name##4
#define CACHE_FLOWS_0 flows4_0
#define CACHE_FLOWS_1 flows4_1
#define CACHE_OUTLINE __noinline
#include "flow_cache_ops.h"
#undef CACHE_SLOT
#undef CACHE_KEY
#undef CACHE_FN
#undef CACHE_FLOWS_0
#undef CACHE_FLOWS_1
#undef CACHE_OUTLINE

#define CACHE_SLOT flow_cache_slot6
#define CACHE_KEY flow_key
#define CACHE_FN(name) name##6
#define CACHE_FLOWS_0 flows6_0
#define CACHE_FLOWS_1 flows6_1
#define CACHE_OUTLINE __always_inline
#include "flow_cache_ops.h"
#undef CACHE_SLOT
#undef CACHE_KEY
#undef CACHE_FN
#undef CACHE_FLOWS_0
#undef CACHE_FLOWS_1
#undef CACHE_OUTLINE
#endif

#endif
