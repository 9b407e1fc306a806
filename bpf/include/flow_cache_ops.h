/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flow cache's operations on one family's slots, written once: flow_cache.h includes
 * this twice, with CACHE_SLOT / CACHE_KEY the family's slot and key structs and
 * CACHE_FN(name) the family's name for each function (cache_find4, cache_find6, ...),
 * CACHE_FLOWS_0 / _1 the family's flow maps of each generation, and CACHE_OUTLINE the
 * attribute of the per-generation miss and release paths: __noinline where the hit path
 * is inline in the caller (IPv4), __always_inline where the caller is itself one
 * out-of-line copy per generation (IPv6's observe6_0/_1), which keeps the deepest call
 * chain within the verifier's 512-byte combined stack.
 * The two slot structs have the same fields by name (flow_record.h); the set lookup and
 * the key compare are the family's own (flow_cache.h).
 */
/* The slot of `set` holding `key`, or 0. */
static __always_inline struct CACHE_SLOT *CACHE_FN(cache_find)(struct CACHE_SLOT *set,
							       const struct CACHE_KEY *key)
{
	if (!set)
		return 0;
	if (CACHE_FN(same_key)(&set[0].key, key))
		return &set[0];
	if (CACHE_FN(same_key)(&set[1].key, key))
		return &set[1];
	return 0;
}

/*
 * The packet counted in its slot, if `set` holds its connection: the slot; else 0 and it
 * goes to the entry. A SYN may make its sender the initiator, a decision made at the
 * entry, so a pure SYN always goes there. (A SYN+ACK changes nothing there but flags: it
 * is counted in the slot, which the SYN claimed, so a new connection costs its insert.)
 */
static __always_inline struct CACHE_SLOT *CACHE_FN(cache_hit)(struct CACHE_SLOT *set,
							      const struct CACHE_KEY *key,
							      const struct packet *p, __u8 dir,
							      __u64 bytes, __u64 now)
{
	struct CACHE_SLOT *s = CACHE_FN(cache_find)(set, key);

	if (!s || (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return 0;
	s->packets[dir] += 1;
	s->bytes[dir] += bytes;
	s->last_seen_ns = now;
	s->tcp_flags |= (__u32)p->tcp_flags << (dir * 8);
	return s;
}

/* Adds what a slot holds to its connection's entry `c`. */
static __always_inline void CACHE_FN(cache_merge)(struct flow_counters *c,
						  const struct CACHE_SLOT *s)
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
static __noinline void CACHE_FN(cache_evict)(struct flow_counters *c, struct CACHE_SLOT *s)
{
	stat_add(FLOW_STAT_CACHE_EVICTIONS, 1);
	if (c) {
		CACHE_FN(cache_merge)(c, s);
	} else {
		/* Entries are only deleted by the drain, which never overlaps: not reached. */
		stat_add(FLOW_STAT_LOST_PACKETS, s->packets[0] + s->packets[1]);
		stat_add(FLOW_STAT_LOST_BYTES, s->bytes[0] + s->bytes[1]);
	}
}

static __always_inline void CACHE_FN(cache_clear)(struct CACHE_SLOT *s)
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
static __always_inline void CACHE_FN(cache_release)(void *flows, struct CACHE_SLOT *s)
{
	CACHE_FN(cache_evict)(bpf_map_lookup_elem(flows, &s->key), s);
	CACHE_FN(cache_clear)(s);
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
static __always_inline void CACHE_FN(cache_claim)(void *flows, struct CACHE_SLOT *set,
						  const struct CACHE_KEY *key, __u64 now)
{
	struct CACHE_SLOT *s = &set[0];

	if (set[0].key.ifindex != 0) {
		s = &set[1];
		if (set[1].key.ifindex != 0) {
			s = set[0].last_seen_ns <= set[1].last_seen_ns ? &set[0] : &set[1];
			if (now - s->last_seen_ns < FLOW_CACHE_KEEP_NS)
				return;
		}
	}
	if (s->packets[0] | s->packets[1])
		CACHE_FN(cache_evict)(bpf_map_lookup_elem(flows, &s->key), s);
	__builtin_memcpy(&s->key, key, sizeof(*key));
	CACHE_FN(cache_clear)(s);
	s->last_seen_ns = now;
}

/*
 * A packet its cache set does not hold: to its entry, then a slot of the set if it has
 * none. One copy per map generation (the map helpers stay direct calls: a helper call
 * reached with more than one map goes through the map's ops, a retpoline, measured +30
 * ns a run), out of line or not as CACHE_OUTLINE says: for IPv4 out of line, so the code
 * a cache hit runs stays short and contiguous; for IPv6 inline in observe6_0/_1.
 * `dir_hook`: dir | hook << 8 (a BPF call takes five arguments).
 */
static __always_inline void CACHE_FN(account_miss)(void *flows, __u32 gen, struct __sk_buff *skb,
						   const struct packet *p,
						   const struct CACHE_KEY *key, __u32 dir_hook,
						   struct CACHE_SLOT *set)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	__u8 dir = dir_hook & 1, hook = dir_hook >> 8;
	int counted = account(skb, flows, gen, p, key, dir, hook, ip_bytes(skb, p), now);
	/*
	 * An ending connection's last packets take no slot: nobody would use it. A SYN (or
	 * SYN+ACK) without FIN or RST starts a connection whatever its entry carries: a
	 * 4-tuple used again in one generation (a client's tcp_tw_reuse, a close by RST)
	 * finds the last connection's FIN there, and without this its whole life would go
	 * to the map on every CPU (measured: tcp-rr's hit rate 38% instead of ~70%).
	 */
	int starting = (p->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST)) == TCP_SYN;

	if ((counted == ACCOUNT_ENTRY || (counted == ACCOUNT_ENDING && starting)) && set &&
	    !CACHE_FN(cache_find)(set, key))
		CACHE_FN(cache_claim)(flows, set, key, now);
}

static CACHE_OUTLINE void CACHE_FN(account_miss_0)(struct __sk_buff *skb, const struct packet *p,
						   const struct CACHE_KEY *key, __u32 dir_hook,
						   struct CACHE_SLOT *set)
{
	CACHE_FN(account_miss)(&CACHE_FLOWS_0, 0, skb, p, key, dir_hook, set);
}

static CACHE_OUTLINE void CACHE_FN(account_miss_1)(struct __sk_buff *skb, const struct packet *p,
						   const struct CACHE_KEY *key, __u32 dir_hook,
						   struct CACHE_SLOT *set)
{
	CACHE_FN(account_miss)(&CACHE_FLOWS_1, 1, skb, p, key, dir_hook, set);
}

/* A FIN or RST hit: the slot to its entry (cache_release). */
static CACHE_OUTLINE void CACHE_FN(cache_release_0)(struct CACHE_SLOT *s)
{
	CACHE_FN(cache_release)(&CACHE_FLOWS_0, s);
}

static CACHE_OUTLINE void CACHE_FN(cache_release_1)(struct CACHE_SLOT *s)
{
	CACHE_FN(cache_release)(&CACHE_FLOWS_1, s);
}

/* A packet: to its cache slot when the slot holds its connection, else to the map. */
static __always_inline void CACHE_FN(account_cached)(struct __sk_buff *skb, __u32 gen,
						     const struct packet *p,
						     const struct CACHE_KEY *key, __u8 dir,
						     __u8 hook)
{
	struct CACHE_SLOT *set = CACHE_FN(cache_set)(gen, key);

#ifdef FLOW_BENCH_SLOT_ONLY
	/* Benchmark variant only: parse, key, the cache set's lookup and compare, no count. */
	struct CACHE_SLOT *hit = CACHE_FN(cache_find)(set, key);
	if (hit)
		hit->packets[dir] += 1;
	return;
#endif
	struct CACHE_SLOT *s =
		CACHE_FN(cache_hit)(set, key, p, dir, ip_bytes(skb, p), bpf_ktime_get_coarse_ns());
	if (s) {
#ifndef FLOW_NO_RELEASE /* benchmark variant only: what the release at a FIN saves */
		if (p->tcp_flags & (TCP_FIN | TCP_RST)) {
			if (gen)
				CACHE_FN(cache_release_1)(s);
			else
				CACHE_FN(cache_release_0)(s);
		}
#endif
		return;
	}
	if (gen)
		CACHE_FN(account_miss_1)(skb, p, key, dir | (__u32)hook << 8, set);
	else
		CACHE_FN(account_miss_0)(skb, p, key, dir | (__u32)hook << 8, set);
}
