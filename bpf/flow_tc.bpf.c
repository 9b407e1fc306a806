// SPDX-License-Identifier: Apache-2.0
/*
 * TC hook (tcx or clsact, ingress and egress) on chosen interfaces: one hash entry per
 * (interface, connection), both directions in the same entry, packets and IP-layer
 * bytes per direction, TCP flags per direction, first/last seen, and who initiated.
 * Observe only: every path returns "next", so the packet's fate is decided by whatever
 * else is attached.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flow_record.h"
#include "maps.h"
#include "parse.h"

#define TC_NEXT -1 /* TCX_NEXT for tcx, TC_ACT_UNSPEC for clsact: both mean "go on" */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define EEXIST_ 17
#define ENOMEM_ 12
#define EBUSY_ 16
#define E2BIG_ 7
#define BPF_F_CURRENT_NETNS_ (-1)

#ifdef FLOW_BENCH_PERCPU
/* Benchmark variant only (bench/datapath.bench.ts): per-CPU values need no atomics. */
#define COUNTER_ADD(p, v) (*(p) += (v))
#else
#define COUNTER_ADD(p, v) __sync_fetch_and_add(p, v)
#endif

/* Flipped by the addon; see maps.h. */
volatile __u32 generation;

/* Conntrack lookup (CONFIG_NF_CONNTRACK); weak so a kernel without it still loads. */
struct bpf_ct_opts___local {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
}; /* the 12-byte layout every kernel with these kfuncs accepts */

#ifndef bpf_ksym_exists /* libbpf < 1.2 */
#define bpf_ksym_exists(sym) (!!(sym))
#endif

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___local *opts,
					 __u32 opts__sz) __ksym __weak;
extern void bpf_ct_release(struct nf_conn *ct) __ksym __weak;

const volatile __u8 use_conntrack = 1;

char LICENSE[] SEC("license") = "GPL";

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&flow_stats, &idx);
	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

/*
 * A mid-stream first packet (connection older than this map generation, or than
 * flowlogd): ask the host's conntrack which way the connection was opened.
 * Returns 1 if the packet's sender initiated, 0 if its receiver did, -1 if unknown.
 */
static __always_inline int conntrack_sender_initiated(struct __sk_buff *skb, const struct packet *p)
{
	struct bpf_ct_opts___local opts = {.netns_id = BPF_F_CURRENT_NETNS_, .l4proto = p->proto};
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	__u32 tuple_sz;
	int sender = -1;

	if (!use_conntrack || !bpf_ksym_exists(bpf_skb_ct_lookup))
		return -1;
	if ((p->proto != IPPROTO_TCP_ && p->proto != IPPROTO_UDP_) || p->nonfirst_fragment)
		return -1;
	if (p->family == 4) {
		__builtin_memcpy(&tuple.ipv4.saddr, &p->saddr[12], 4);
		__builtin_memcpy(&tuple.ipv4.daddr, &p->daddr[12], 4);
		tuple.ipv4.sport = bpf_htons(p->sport);
		tuple.ipv4.dport = bpf_htons(p->dport);
		tuple_sz = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, p->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, p->daddr, 16);
		tuple.ipv6.sport = bpf_htons(p->sport);
		tuple.ipv6.dport = bpf_htons(p->dport);
		tuple_sz = sizeof(tuple.ipv6);
	}
	stat_add(FLOW_STAT_CT_LOOKUPS, 1);
	ct = bpf_skb_ct_lookup(skb, &tuple, tuple_sz, &opts, 12);
	if (!ct)
		return -1;
	stat_add(FLOW_STAT_CT_HITS, 1);
	/* The packet is in the original direction iff its source is the original source. */
	{
		struct nf_conntrack_tuple *orig = &ct->tuplehash[0].tuple;
		if (p->family == 4)
			sender = orig->src.u3.ip == tuple.ipv4.saddr &&
				 orig->src.u.all == tuple.ipv4.sport;
		else
			sender = orig->src.u3.ip6[0] == ((__u32 *)tuple.ipv6.saddr)[0] &&
				 orig->src.u3.ip6[1] == ((__u32 *)tuple.ipv6.saddr)[1] &&
				 orig->src.u3.ip6[2] == ((__u32 *)tuple.ipv6.saddr)[2] &&
				 orig->src.u3.ip6[3] == ((__u32 *)tuple.ipv6.saddr)[3] &&
				 orig->src.u.all == tuple.ipv6.sport;
	}
	bpf_ct_release(ct);
	return sender;
}

/* Decide who opened a connection from its first packet in this generation. */
static __always_inline void set_initiator(struct __sk_buff *skb, const struct packet *p, __u8 dir,
					  struct flow_counters *c)
{
	__u8 other = dir ^ 1;
	int sender;

	if (p->proto == IPPROTO_TCP_ && (p->tcp_flags & TCP_SYN)) {
		/* SYN: the sender opens; SYN+ACK: the sender answers. */
		c->initiator = (p->tcp_flags & TCP_ACK) ? other : dir;
		c->initiator_how = FLOW_INIT_SYN;
		return;
	}
	sender = conntrack_sender_initiated(skb, p);
	if (sender >= 0) {
		c->initiator = sender ? dir : other;
		c->initiator_how = FLOW_INIT_CONNTRACK;
		return;
	}
	if (p->proto == IPPROTO_TCP_ && p->sport != p->dport) {
		/* Mid-stream TCP with no conntrack: the ephemeral (higher) port is the client's. */
		c->initiator = p->sport > p->dport ? dir : other;
		c->initiator_how = FLOW_INIT_PORT_GUESS;
		return;
	}
	c->initiator = dir;
	c->initiator_how = FLOW_INIT_FIRST_PACKET;
}

/*
 * A packet whose connection found no room in the flow map: into its interface's overflow
 * counts for generation `gen_hook & 1`, so the flow logs still carry it (maps.h
 * flow_overflow_*). Out of line (a rare path, and its locals stay off the hot path's
 * stack); each map has its own call site, so each helper call stays a direct one.
 * `gen_hook`: gen | hook << 8.
 */
static __noinline void count_overflow(struct __sk_buff *skb, const struct packet *p, __u32 gen_hook,
				      __u64 bytes)
{
	struct overflow_key k = {.ifindex = skb->ifindex, .proto = p->proto, .family = p->family};
	struct overflow_counters init = {};
	struct overflow_counters *o;
	__u8 h = (gen_hook >> 8) == FLOW_HOOK_EGRESS ? 1 : 0;

	if (gen_hook & 1) {
		o = bpf_map_lookup_elem(&flow_overflow_1, &k);
		if (!o) {
			bpf_map_update_elem(&flow_overflow_1, &k, &init, BPF_NOEXIST);
			o = bpf_map_lookup_elem(&flow_overflow_1, &k);
		}
	} else {
		o = bpf_map_lookup_elem(&flow_overflow_0, &k);
		if (!o) {
			bpf_map_update_elem(&flow_overflow_0, &k, &init, BPF_NOEXIST);
			o = bpf_map_lookup_elem(&flow_overflow_0, &k);
		}
	}
	if (!o)
		return;	    /* the overflow map is full too: in the lost counters only */
	o->packets[h] += 1; /* per-CPU value: no atomics needed */
	o->bytes[h] += bytes;
	stat_add(FLOW_STAT_OVERFLOW_PACKETS, 1);
	stat_add(FLOW_STAT_OVERFLOW_BYTES, bytes);
}

static __always_inline void count_failed_insert(long err, __u64 bytes)
{
	__u32 idx;

	switch (-err) {
	case E2BIG_:
		idx = FLOW_STAT_INSERT_E2BIG;
		break;
	case EBUSY_:
		idx = FLOW_STAT_INSERT_EBUSY;
		break;
	case ENOMEM_:
		idx = FLOW_STAT_INSERT_ENOMEM;
		break;
	default:
		idx = FLOW_STAT_INSERT_OTHER;
	}
	stat_add(idx, 1);
	stat_add(FLOW_STAT_LOST_PACKETS, 1);
	stat_add(FLOW_STAT_LOST_BYTES, bytes);
}

/* IP-layer bytes, as conntrack counts them. */
static __always_inline __u64 ip_bytes(struct __sk_buff *skb, const struct packet *p)
{
	__u64 bytes = skb->len - p->l3_off;
	/* Ethernet pads short frames (a 40-byte ACK arrives as 46): count what IP says, as
	 * conntrack does after ip_rcv trims. GSO/GRO packets carry their full length. */
	if (p->l3_len && p->l3_len < bytes)
		bytes = p->l3_len;
	return bytes;
}

/* Adds one packet to its connection's entry. */
static __always_inline void add_to_entry(struct flow_counters *c, const struct packet *p, __u8 dir,
					 __u64 bytes, __u64 now)
{
	COUNTER_ADD(&c->packets[dir], 1);
	COUNTER_ADD(&c->bytes[dir], bytes);
	c->last_seen_ns = now;
	if (p->tcp_flags) {
		__u32 bits = (__u32)p->tcp_flags << (dir * 8);
		if ((c->tcp_flags & bits) != bits)
			__sync_fetch_and_or(&c->tcp_flags, bits);
		if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
		    c->initiator_how < FLOW_INIT_SYN) {
			c->initiator = dir;
			c->initiator_how = FLOW_INIT_SYN;
		}
	}
}

/*
 * The first packet of (interface, connection) in this map generation: its new entry, the
 * initiator decided (maybe by a conntrack lookup). Out of line, as every path below that
 * only some packets take: the instructions most packets run stay few and contiguous,
 * which is what a program run costs when packets come one at a time between other work
 * and the program's code is no longer in the CPU's caches (request/response traffic).
 * Map helpers stay in the callers, one copy per map: a helper call reached with more
 * than one map is no longer made a direct call by the verifier (it goes through the
 * map's ops, a retpoline: measured +30 ns a run on request/response TCP).
 * `dir_hook`: dir | hook << 8 (a BPF call takes five arguments).
 */
static __noinline void init_entry(struct __sk_buff *skb, const struct packet *p, __u32 dir_hook,
				  __u64 bytes, struct flow_counters *init)
{
	__u8 dir = dir_hook & 1, hook = dir_hook >> 8;
	__u64 now = bpf_ktime_get_coarse_ns();

	init->packets[dir] = 1;
	init->bytes[dir] = bytes;
	init->first_seen_ns = now;
	init->last_seen_ns = now;
	init->tcp_flags = (__u32)p->tcp_flags << (dir * 8);
	init->first_hook = hook;
	init->first_dir = dir;
	init->icmp_type = p->icmp_type;
	init->icmp_code = p->icmp_code;
	set_initiator(skb, p, dir, init);
}

/* Counts the packet in its map entry; returns 1 if the entry exists now. */
static __always_inline int account(struct __sk_buff *skb, void *flows, __u32 gen,
				   const struct packet *p, const void *key, __u8 dir, __u8 hook,
				   __u64 bytes, __u64 now)
{
	struct flow_counters *c = bpf_map_lookup_elem(flows, key);

	if (!c) {
		struct flow_counters init = {};
		long err;

		init_entry(skb, p, dir | (__u32)hook << 8, bytes, &init);
		err = bpf_map_update_elem(flows, key, &init, BPF_NOEXIST);
		if (!err)
			return 1;
		if (err != -EEXIST_) {
			count_failed_insert(err, bytes);
			count_overflow(skb, p, gen | (__u32)hook << 8, bytes);
			return 0;
		}
		/* Another CPU inserted the same connection first: add to its entry. */
		c = bpf_map_lookup_elem(flows, key);
		if (!c) {
			count_failed_insert(err, bytes);
			count_overflow(skb, p, gen | (__u32)hook << 8, bytes);
			return 0;
		}
	}
	add_to_entry(c, p, dir, bytes, now);
	return 1;
}

#ifndef FLOW_NO_CACHE
/* The first of the FLOW_CACHE_WAYS slots of the set `k` maps to. */
static __always_inline struct flow_cache_slot *cache_set(__u32 gen, const struct flow_key4 *k)
{
	struct flow_cache *cache = bpf_map_lookup_elem(&flow_cache, &gen);
	__u32 h;

	if (!cache)
		return 0;
	h = k->addr_a * 0x85ebca77u;
	h ^= k->addr_b * 0xc2b2ae3du;
	h ^= (((__u32)k->port_a << 16) | k->port_b) * 0x27d4eb2fu;
	h ^= k->proto;
	/* The interface is added, not hashed: a packet crosses two veths (ingress on one,
	 * egress on the other, on the same CPU), and their ifindexes, created together,
	 * differ by a few, so one connection's two keys land in different sets instead of
	 * sharing one. */
	h = ((h ^ (h >> 16)) + k->ifindex) & (FLOW_CACHE_SLOTS / FLOW_CACHE_WAYS - 1);
	return &cache->slot[h * FLOW_CACHE_WAYS];
}

static __always_inline int same_key4(const struct flow_key4 *a, const struct flow_key4 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
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
 * Gives a slot of the set to `key` (whose entry exists). An empty way first; else the
 * way seen longest ago, its counts added to its entry first, unless both ways were
 * counted in this clock tick: more live connections than ways, and taking a busy slot
 * would cost a lookup for the evicted connection on every packet (thrashing) where
 * leaving it costs nothing.
 */
static __always_inline void cache_claim(void *flows, struct flow_cache_slot *set,
					const struct flow_key4 *key, __u64 now)
{
	struct flow_cache_slot *s = &set[0];

	if (set[0].key.ifindex != 0) {
		s = &set[1];
		if (set[1].key.ifindex != 0) {
			s = set[0].last_seen_ns <= set[1].last_seen_ns ? &set[0] : &set[1];
			if (s->last_seen_ns == now)
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

/* An IPv4 packet: to its cache slot when the slot holds its connection, else to the map. */
static __always_inline void account4(struct __sk_buff *skb, void *flows, __u32 gen,
				     const struct packet *p, const struct flow_key4 *key, __u8 dir,
				     __u8 hook)
{
	__u64 bytes = ip_bytes(skb, p);
	__u64 now = bpf_ktime_get_coarse_ns();
#ifndef FLOW_NO_CACHE
	struct flow_cache_slot *set = cache_set(gen, key), *s = 0;

	if (set) {
		if (same_key4(&set[0].key, key))
			s = &set[0];
		else if (same_key4(&set[1].key, key))
			s = &set[1];
	}
#ifdef FLOW_BENCH_SLOT_ONLY
	/* Benchmark variant only: parse, key, the cache set's lookup and compare, no count. */
	if (s)
		s->packets[dir] += 1;
	return;
#endif
	/* A SYN may make the sender the initiator: that decision is made at the entry. (A
	 * SYN+ACK changes nothing there but flags: it is counted in the slot, which the SYN
	 * claimed, so a new connection costs its insert and at most one eviction.) */
	if (s && (p->tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN) {
		s->packets[dir] += 1;
		s->bytes[dir] += bytes;
		s->last_seen_ns = now;
		s->tcp_flags |= (__u32)p->tcp_flags << (dir * 8);
		return;
	}
	if (account(skb, flows, gen, p, key, dir, hook, bytes, now) && set && !s)
		cache_claim(flows, set, key, now);
#else
	account(skb, flows, gen, p, key, dir, hook, bytes, now);
#endif
}

/* A first fragment records its ports; later ones of the same datagram take them. */
static __noinline void fragment_ports(struct packet *p)
{
	struct frag_key k = {.id = p->frag_id, .proto = p->proto};
	struct frag_ports *found;

	__builtin_memcpy(k.saddr, p->saddr, 16);
	__builtin_memcpy(k.daddr, p->daddr, 16);
	if (p->first_fragment) {
		struct frag_ports v = {.sport = p->sport, .dport = p->dport};
		bpf_map_update_elem(&frag_ports, &k, &v, BPF_ANY);
		return;
	}
	stat_add(FLOW_STAT_FRAGMENTS, 1);
	found = bpf_map_lookup_elem(&frag_ports, &k);
	if (found) {
		p->sport = found->sport;
		p->dport = found->dport;
	}
}

/* An IPv6 packet, to the map under the full key (no cache: its key does not fit a slot). */
static __noinline void observe6(struct __sk_buff *skb, const struct packet *p, __u32 dir_hook)
{
	__u8 dir = dir_hook & 1, hook = dir_hook >> 8;
	__u64 bytes = ip_bytes(skb, p), now = bpf_ktime_get_coarse_ns();
	struct flow_key key = {};

	key.ifindex = skb->ifindex;
	key.proto = p->proto;
	key.family = p->family;
	__builtin_memcpy(key.addr_a, dir == FLOW_DIR_AB ? p->saddr : p->daddr, 16);
	__builtin_memcpy(key.addr_b, dir == FLOW_DIR_AB ? p->daddr : p->saddr, 16);
	key.port_a = dir == FLOW_DIR_AB ? p->sport : p->dport;
	key.port_b = dir == FLOW_DIR_AB ? p->dport : p->sport;
	if (generation & 1)
		account(skb, &flows6_1, 1, p, &key, dir, hook, bytes, now);
	else
		account(skb, &flows6_0, 0, p, &key, dir, hook, bytes, now);
}

static __always_inline int observe(struct __sk_buff *skb, __u8 hook)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct packet p = {};
	__u8 dir;
	int res;

	res = parse_packet(&p, data, end);
	if (res != PARSE_OK && res != PARSE_NON_IP && skb->len > end - data) {
		/* Headers not in the linear area: pull them in and parse again. */
		__u32 want = skb->len < PARSE_MAX_OFFSET + 64 ? skb->len : PARSE_MAX_OFFSET + 64;
		if (bpf_skb_pull_data(skb, want) == 0) {
			__builtin_memset(&p, 0, sizeof(p));
			data = (void *)(long)skb->data;
			end = (void *)(long)skb->data_end;
			res = parse_packet(&p, data, end);
		}
	}
	switch (res) {
	case PARSE_OK:
		break;
	case PARSE_NON_IP:
		stat_add(FLOW_STAT_NON_IP, 1);
		return TC_NEXT;
	case PARSE_BAD_L2:
		stat_add(FLOW_STAT_PARSE_L2, 1);
		return TC_NEXT;
	case PARSE_BAD_L3:
		stat_add(FLOW_STAT_PARSE_L3, 1);
		return TC_NEXT;
	default:
		stat_add(FLOW_STAT_PARSE_L4, 1);
		return TC_NEXT;
	}
#ifdef FLOW_BENCH_PARSE_ONLY
	/* Benchmark variant only (bench lab --object): what parsing alone costs. */
	return TC_NEXT;
#endif
	if (p.first_fragment || p.nonfirst_fragment)
		fragment_ports(&p);

	dir = endpoint_before(&p) ? FLOW_DIR_AB : FLOW_DIR_BA;
	if (p.family == 4) {
		struct flow_key4 key4 = {.ifindex = skb->ifindex, .proto = p.proto};

		__builtin_memcpy(&key4.addr_a, dir == FLOW_DIR_AB ? &p.saddr[12] : &p.daddr[12], 4);
		__builtin_memcpy(&key4.addr_b, dir == FLOW_DIR_AB ? &p.daddr[12] : &p.saddr[12], 4);
		key4.port_a = dir == FLOW_DIR_AB ? p.sport : p.dport;
		key4.port_b = dir == FLOW_DIR_AB ? p.dport : p.sport;
		/* One read: the cache and the map must be of the same generation. */
		__u32 gen = generation & 1;

		if (gen)
			account4(skb, &flows4_1, gen, &p, &key4, dir, hook);
		else
			account4(skb, &flows4_0, gen, &p, &key4, dir, hook);
		return TC_NEXT;
	}
	observe6(skb, &p, dir | (__u32)hook << 8);
	return TC_NEXT;
}

#define LOOPBACK_IFINDEX 1

SEC("tc")
int flowlogd_in(struct __sk_buff *skb)
{
	/* Loopback delivers what it just sent: counted once, at egress. */
	if (skb->ifindex == LOOPBACK_IFINDEX)
		return TC_NEXT;
	return observe(skb, FLOW_HOOK_INGRESS);
}

SEC("tc")
int flowlogd_eg(struct __sk_buff *skb)
{
	return observe(skb, FLOW_HOOK_EGRESS);
}
