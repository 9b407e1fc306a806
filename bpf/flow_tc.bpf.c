// SPDX-License-Identifier: Apache-2.0
/*
 * TC hook (tcx or clsact, ingress and egress) on chosen interfaces: one hash entry per
 * (interface, connection), both directions in the same entry, packets and IP-layer
 * bytes per direction, TCP flags per direction, first/last seen, and who initiated.
 * Observe only: every path returns "next", so the packet's fate is decided by whatever
 * else is attached.
 *
 * This file is the path every packet takes (parse, key) and the families' entry points;
 * include/flow_entry.h holds the map entry (insert, initiator, overflow),
 * include/flow_cache.h the per-CPU caches, and include/flow_cache_ops.h their
 * operations, the hit path among them, written once for IPv4 and IPv6.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flow_record.h"
#include "maps.h"
#include "parse.h"
#include "drain_wake.h"
#include "flow_entry.h"
#include "flow_cache.h"

#define TC_NEXT -1 /* TCX_NEXT for tcx, TC_ACT_UNSPEC for clsact: both mean "go on" */

/* Flipped by the addon; see maps.h. */
volatile __u32 generation;

char LICENSE[] SEC("license") = "GPL";

/*
 * A packet of family 4 or 6: through its per-CPU cache (flow_cache_ops.h,
 * account_cached4/6), or with the cache compiled out straight to its generation's map.
 */
static __always_inline void account4(struct __sk_buff *skb, __u32 gen, const struct packet *p,
				     const struct flow_key4 *key, __u8 dir, __u8 hook)
{
#ifndef FLOW_NO_CACHE
	account_cached4(skb, gen, p, key, dir, hook);
#else
	__u64 now = bpf_ktime_get_coarse_ns();

	if (gen)
		account(skb, &flows4_1, 1, p, key, dir, hook, ip_bytes(skb, p), now);
	else
		account(skb, &flows4_0, 0, p, key, dir, hook, ip_bytes(skb, p), now);
#endif
}

static __always_inline void account6(struct __sk_buff *skb, __u32 gen, const struct packet *p,
				     const struct flow_key *key, __u8 dir, __u8 hook)
{
#ifndef FLOW_NO_CACHE
	account_cached6(skb, gen, p, key, dir, hook);
#else
	__u64 now = bpf_ktime_get_coarse_ns();

	if (gen)
		account(skb, &flows6_1, 1, p, key, dir, hook, ip_bytes(skb, p), now);
	else
		account(skb, &flows6_0, 0, p, key, dir, hook, ip_bytes(skb, p), now);
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

/*
 * An IPv6 packet: its full key, then through its cache as an IPv4 packet goes through
 * its own. Out of line, one copy per map generation (`gen` a constant in each, so each
 * calls one generation's maps directly, as account_miss_04/_14 do): the IPv4 path's frame and code
 * stay as they were (inline, this frame cost tcp-rr over IPv4 ~25 ns a run), and the miss path
 * inside it is inline (CACHE_OUTLINE), so the deepest chain stays within the 512-byte stack.
 */
static __always_inline void observe6(struct __sk_buff *skb, __u32 gen, const struct packet *p,
				     __u32 dir_hook)
{
	__u8 dir = dir_hook & 1, hook = dir_hook >> 8;
	struct flow_key key = {};

	key.ifindex = skb->ifindex;
	key.proto = p->proto;
	key.family = p->family;
	__builtin_memcpy(key.addr_a, dir == FLOW_DIR_AB ? p->saddr : p->daddr, 16);
	__builtin_memcpy(key.addr_b, dir == FLOW_DIR_AB ? p->daddr : p->saddr, 16);
	key.port_a = dir == FLOW_DIR_AB ? p->sport : p->dport;
	key.port_b = dir == FLOW_DIR_AB ? p->dport : p->sport;
	account6(skb, gen, p, &key, dir, hook);
}

static __noinline void observe6_0(struct __sk_buff *skb, const struct packet *p, __u32 dir_hook)
{
	observe6(skb, 0, p, dir_hook);
}

static __noinline void observe6_1(struct __sk_buff *skb, const struct packet *p, __u32 dir_hook)
{
	observe6(skb, 1, p, dir_hook);
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

		account4(skb, gen, &p, &key4, dir, hook);
		return TC_NEXT;
	}
	/* One read: the cache and the map must be of the same generation. */
	if (generation & 1)
		observe6_1(skb, &p, dir | (__u32)hook << 8);
	else
		observe6_0(skb, &p, dir | (__u32)hook << 8);
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
