/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection's entry in flows{4,6}_<generation> (bpf/flow_tc.bpf.c): the first
 * packet's new entry and who initiated (SYN, the host's conntrack, or a guess), the
 * counts of every packet the per-CPU cache does not take, and the overflow counts of
 * the packets whose insert failed. Included by flow_tc.bpf.c only.
 */
#ifndef FLOWLOGD_FLOW_ENTRY_H
#define FLOWLOGD_FLOW_ENTRY_H

#include "flow_record.h"
#include "maps.h"
#include "parse.h"
#include "drain_wake.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
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

/* The entry's connection has sent a FIN or RST (either way): it is ending. */
#define ENDING_FLAGS ((__u32)(TCP_FIN | TCP_RST) * 0x101)
#define ACCOUNT_NONE 0	 /* no entry (the insert failed: counted as overflow) */
#define ACCOUNT_ENTRY 1	 /* counted in its entry */
#define ACCOUNT_ENDING 2 /* counted in its entry, a connection that is ending */

/* Counts the packet in its map entry; returns ACCOUNT_*. */
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
		if (!err) {
			DRAIN_WAKE_ON_INSERT(); /* drain_wake.h: the drain thread may sleep */
			return ACCOUNT_ENTRY;
		}
		if (err != -EEXIST_) {
			count_failed_insert(err, bytes);
			count_overflow(skb, p, gen | (__u32)hook << 8, bytes);
			return ACCOUNT_NONE;
		}
		/* Another CPU inserted the same connection first: add to its entry. */
		c = bpf_map_lookup_elem(flows, key);
		if (!c) {
			count_failed_insert(err, bytes);
			count_overflow(skb, p, gen | (__u32)hook << 8, bytes);
			return ACCOUNT_NONE;
		}
	}
	add_to_entry(c, p, dir, bytes, now);
	return (c->tcp_flags & ENDING_FLAGS) ? ACCOUNT_ENDING : ACCOUNT_ENTRY;
}

#endif
