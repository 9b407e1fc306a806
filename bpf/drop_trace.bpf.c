// SPDX-License-Identifier: Apache-2.0
/*
 * Denied traffic: the skb:kfree_skb tracepoint (tp_btf, the cheapest attachment this
 * kernel allows: fentry and kprobes are not available) with the kernel's drop reason.
 * Every drop costs one per-CPU counter; only policy drops (netfilter, TC) of packets on an
 * interface the TC program watches are parsed and counted per connection, under the same
 * key the TC program used, so JavaScript can move them from `allow` to `deny`.
 *
 * The flow maps and flow_stats are the TC object's (the addon reuses their fds).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "flow_record.h"
/* The TC programs' per-CPU connection cache is theirs alone. */
#define FLOW_NO_CACHE
#include "maps.h"
#include "parse.h"

char LICENSE[] SEC("license") = "GPL";

/* Flipped by the addon together with the TC object's; see maps.h. */
volatile __u32 generation;

#define DROP_MAP_DEF(name)                                                                         \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 16384);                                                        \
		__type(key, struct drop_key);                                                      \
		__type(value, struct flow_counters);                                               \
	} name SEC(".maps")

DROP_MAP_DEF(drops_0);
DROP_MAP_DEF(drops_1);

/* Interfaces the TC program is attached to (the addon keeps it in step). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} watched_ifaces SEC(".maps");

/* Every drop by reason (index: reason, 255 for reasons >= 255, e.g. subsystem ones). */
#define DROP_REASON_SLOTS 256
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drop_reasons SEC(".maps");

static __always_inline void bump(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);
	if (v)
		*v += 1;
}

static __always_inline int is_policy_drop(__u32 reason)
{
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP))
		return 1;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TC_INGRESS) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TC_INGRESS))
		return 1;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TC_EGRESS) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TC_EGRESS))
		return 2;
	return 0;
}

/* L4 identity as parse.h computes it, read from kernel memory. */
static __always_inline void read_ports(struct packet *p, const void *l4)
{
	__u8 h[8] = {};

	if (bpf_probe_read_kernel(h, sizeof(h), l4))
		return;
	switch (p->proto) {
	case IPPROTO_TCP_:
		p->sport = (__u16)h[0] << 8 | h[1];
		p->dport = (__u16)h[2] << 8 | h[3];
		break;
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_:
		p->sport = (__u16)h[0] << 8 | h[1];
		p->dport = (__u16)h[2] << 8 | h[3];
		break;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_: {
		__u8 req = p->proto == IPPROTO_ICMP_ ? 8 : 128;
		__u8 rep = p->proto == IPPROTO_ICMP_ ? 0 : 129;
		p->icmp_type = h[0];
		p->icmp_code = h[1];
		if (h[0] == req || h[0] == rep) {
			p->sport = (__u16)h[4] << 8 | h[5];
			p->dport = p->sport;
		} else {
			p->sport = (__u16)h[0] << 8 | h[1];
			p->dport = p->sport;
		}
		break;
	}
	}
}

static __always_inline int parse_skb(struct sk_buff *skb, struct packet *p)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = BPF_CORE_READ(skb, protocol);
	unsigned char *l3 = head + nh;

	if (proto == bpf_htons(ETH_P_IP_)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3) || ip.version != 4 || ip.ihl < 5)
			return -1;
		p->family = 4;
		p->proto = ip.protocol;
		ipv4_mapped(p->saddr, ip.saddr);
		ipv4_mapped(p->daddr, ip.daddr);
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return 0; /* non-first fragment: no ports, as the TC key */
		read_ports(p, l3 + ip.ihl * 4);
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6_)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3) || ip6.version != 6)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		/* Walk the extension headers as parse.h does, so the key is the TC program's. */
		__u8 next = ip6.nexthdr;
		__u32 off = sizeof(ip6);
		for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
			__u8 h[8];

			if (next != 0 && next != 43 && next != 60 && next != 51 && next != 44)
				break;
			if (bpf_probe_read_kernel(h, sizeof(h), l3 + off))
				return -1;
			if (next == 44) {
				if (bpf_ntohs(*(__u16 *)(h + 2)) & 0xfff8) {
					p->proto = h[0];
					return 0; /* non-first fragment: no L4 header here */
				}
				off += 8;
			} else if (next == 51) {
				off += ((__u32)h[1] + 2) * 4;
			} else {
				off += ((__u32)h[1] + 1) * 8;
			}
			next = h[0];
		}
		p->proto = next;
		read_ports(p, l3 + off);
		return 0;
	}
	return -1;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(flowlogd_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct drop_key key = {};
	struct flow_counters *c;
	struct packet p = {};
	__u32 ifindex;
	__u8 dir, hook;
	__u64 bytes, now;
	int kind;

	bump(&drop_reasons,
	     (__u32)reason < DROP_REASON_SLOTS ? (__u32)reason : DROP_REASON_SLOTS - 1);
	kind = is_policy_drop(reason);
	if (!kind) {
		bump(&flow_stats, FLOW_STAT_DROPS_OTHER);
		return 0;
	}
	/* The interface whose TC program counted the packet: where it came in, or for a TC
	 * egress drop the interface it was leaving by. */
	if (kind == 2) {
		ifindex = BPF_CORE_READ(skb, dev, ifindex);
		hook = FLOW_HOOK_EGRESS;
	} else {
		ifindex = BPF_CORE_READ(skb, skb_iif);
		hook = FLOW_HOOK_INGRESS;
	}
	if (!ifindex || !bpf_map_lookup_elem(&watched_ifaces, &ifindex)) {
		bump(&flow_stats, FLOW_STAT_DROPS_UNWATCHED);
		return 0;
	}
	if (parse_skb(skb, &p)) {
		bump(&flow_stats, FLOW_STAT_DROPS_UNWATCHED);
		return 0;
	}
	bump(&flow_stats, FLOW_STAT_DROPS_POLICY);
	{
		/* IP-layer bytes, as the TC program counts them. */
		unsigned char *head = BPF_CORE_READ(skb, head);
		unsigned char *data = BPF_CORE_READ(skb, data);
		__u16 nh = BPF_CORE_READ(skb, network_header);
		bytes = BPF_CORE_READ(skb, len) - (nh - (data - head));
	}
	key.flow.ifindex = ifindex;
	key.flow.proto = p.proto;
	key.flow.family = p.family;
	key.reason = reason;
	if (endpoint_before(&p)) {
		dir = FLOW_DIR_AB;
		__builtin_memcpy(key.flow.addr_a, p.saddr, 16);
		__builtin_memcpy(key.flow.addr_b, p.daddr, 16);
		key.flow.port_a = p.sport;
		key.flow.port_b = p.dport;
	} else {
		dir = FLOW_DIR_BA;
		__builtin_memcpy(key.flow.addr_a, p.daddr, 16);
		__builtin_memcpy(key.flow.addr_b, p.saddr, 16);
		key.flow.port_a = p.dport;
		key.flow.port_b = p.sport;
	}
	void *map = (generation & 1) ? (void *)&drops_1 : (void *)&drops_0;
	now = bpf_ktime_get_ns(); /* coarse is not allowed in tracing programs; same clock */
	c = bpf_map_lookup_elem(map, &key);
	if (!c) {
		struct flow_counters init = {};
		init.packets[dir] = 1;
		init.bytes[dir] = bytes;
		init.first_seen_ns = now;
		init.last_seen_ns = now;
		init.tcp_flags = 0;
		init.initiator = dir; /* JavaScript orients it like the allowed side, if any */
		init.initiator_how = FLOW_INIT_FIRST_PACKET;
		init.first_hook = hook;
		init.first_dir = dir;
		init.icmp_type = p.icmp_type;
		init.icmp_code = p.icmp_code;
		if (!bpf_map_update_elem(map, &key, &init, BPF_NOEXIST))
			return 0;
		c = bpf_map_lookup_elem(map, &key);
		if (!c) {
			bump(&flow_stats, FLOW_STAT_DROP_INSERT_FAILED);
			return 0;
		}
	}
	__sync_fetch_and_add(&c->packets[dir], 1);
	__sync_fetch_and_add(&c->bytes[dir], bytes);
	c->last_seen_ns = now;
	return 0;
}
