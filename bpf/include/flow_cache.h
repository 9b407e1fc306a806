/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-CPU cache of recently counted IPv4 connections in front of flows4_<generation>
 * (maps.h flow_cache, flow_record.h struct flow_cache_slot): a packet of a connection its
 * set holds adds to the slot with plain adds; a slot is claimed only after the
 * connection's entry exists, and its counts go to the entry when another connection
 * takes the slot, or from the addon before it drains the generation. Included by
 * flow_tc.bpf.c only.
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
static __always_inline struct flow_cache_slot *cache_set(__u32 gen, const struct flow_key4 *k)
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

/* The slot of `set` holding `key`, or 0. */
static __always_inline struct flow_cache_slot *cache_find(struct flow_cache_slot *set,
							  const struct flow_key4 *key)
{
	if (!set)
		return 0;
	if (same_key4(&set[0].key, key))
		return &set[0];
	if (same_key4(&set[1].key, key))
		return &set[1];
	return 0;
}

/*
 * The packet counted in its slot, if `set` holds its connection: the slot; else 0 and it
 * goes to the entry. A SYN may make its sender the initiator, a decision made at the
 * entry, so a pure SYN always goes there. (A SYN+ACK changes nothing there but flags: it
 * is counted in the slot, which the SYN claimed, so a new connection costs its insert.)
 */
static __always_inline struct flow_cache_slot *cache_hit(struct flow_cache_slot *set,
							 const struct flow_key4 *key,
							 const struct packet *p, __u8 dir,
							 __u64 bytes, __u64 now)
{
	struct flow_cache_slot *s = cache_find(set, key);

	if (!s || (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return 0;
	s->packets[dir] += 1;
	s->bytes[dir] += bytes;
	s->last_seen_ns = now;
	s->tcp_flags |= (__u32)p->tcp_flags << (dir * 8);
	return s;
}

/* Adds what a slot holds to its connection's entry `c`. */
static __always_inline void cache_merge(struct flow_counters *c, const struct flow_cache_slot *s)
{
	/* Counted here, not per hit: the hit path stays two memory writes shorter. */
	stat_add(FLOW_STAT_CACHE_HITS, s->packets[0] + s->packets[1]);
	COUNTER_ADD(&c->packets[0], s->packets[0]);
	COUNTER_ADD(&c->packets[1], s->packets[1]);
	COUNTER_ADD(&c->bytes[0], s->bytes[0]);
	COUNTER_ADD(&c->bytes[1], s->bytes[1]);
	if (c->last_seen_ns < s->last_seen_ns)
		c->last_seen_ns = s->last_seen_ns;
	if ((c->tcp_flags & s->tcp_flags) != s->tcp_flags)
		__sync_fetch_and_or(&c->tcp_flags, s->tcp_flags);
}

/* A slot's counts to its connection's entry `c` (looked up by the caller), before
 * another connection takes the slot. */
static __noinline void cache_evict(struct flow_counters *c, struct flow_cache_slot *s)
{
	stat_add(FLOW_STAT_CACHE_EVICTIONS, 1);
	if (c) {
		cache_merge(c, s);
	} else {
		/* Entries are only deleted by the drain, which never overlaps: not reached. */
		stat_add(FLOW_STAT_LOST_PACKETS, s->packets[0] + s->packets[1]);
		stat_add(FLOW_STAT_LOST_BYTES, s->bytes[0] + s->bytes[1]);
	}
}

static __always_inline void cache_clear(struct flow_cache_slot *s)
{
	s->tcp_flags = 0;
	s->packets[0] = s->packets[1] = 0;
	s->bytes[0] = s->bytes[1] = 0;
}

/*
 * A FIN or RST counted in slot `s`: its counts to the entry now, and the slot empty.
 * The connection is ending, and its entry was touched a few packets ago (still in the
 * CPU's caches); left in the slot, they would go to the entry when another connection
 * needs the way, by then a lookup of cold memory (measured: most of what a short
 * connection cost). The connection's last packets go to its entry (a free way: no
 * eviction for whoever takes it).
 */
static __always_inline void cache_release(void *flows, struct flow_cache_slot *s)
{
	cache_evict(bpf_map_lookup_elem(flows, &s->key), s);
	cache_clear(s);
	s->key.ifindex = 0; /* empty: no packet has interface 0 */
}

/*
 * Gives a slot of the set to `key` (whose entry exists): an empty way; else the way
 * seen longest ago, its counts added to its entry first, unless it was counted in the
 * last FLOW_CACHE_KEEP_NS: more live connections than ways, and taking a busy slot
 * would cost a lookup for the evicted connection on every packet (thrashing) where
 * leaving it costs nothing. (Measured: 20 ms took 1,024 flows on one CPU from 82% to
 * 90% hits; keeping only the current clock tick's made them thrash.)
 */
static __always_inline void cache_claim(void *flows, struct flow_cache_slot *set,
					const struct flow_key4 *key, __u64 now)
{
	struct flow_cache_slot *s = &set[0];

	if (set[0].key.ifindex != 0) {
		s = &set[1];
		if (set[1].key.ifindex != 0) {
			s = set[0].last_seen_ns <= set[1].last_seen_ns ? &set[0] : &set[1];
			if (now - s->last_seen_ns < FLOW_CACHE_KEEP_NS)
				return;
		}
	}
	if (s->packets[0] | s->packets[1])
		cache_evict(bpf_map_lookup_elem(flows, &s->key), s);
	__builtin_memcpy(&s->key, key, sizeof(*key));
	cache_clear(s);
	s->last_seen_ns = now;
}
#endif

#endif
