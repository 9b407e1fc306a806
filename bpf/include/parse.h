/* SPDX-License-Identifier: Apache-2.0 */
/* Packet parsing for the TC programs: Ethernet (+2 VLAN tags), IPv4/IPv6, L4 identity. */
#ifndef FLOWLOGD_PARSE_H
#define FLOWLOGD_PARSE_H

#include "flow_record.h"

#define ETH_HLEN_ 14
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132

/* Headers beyond this offset are not looked for; keeps every offset provably bounded. */
#define PARSE_MAX_OFFSET 256
#define IPV6_MAX_EXT_HEADERS 6

enum parse_result {
	PARSE_OK = 0,
	PARSE_NON_IP,
	PARSE_BAD_L2,
	PARSE_BAD_L3,
	PARSE_BAD_L4,
};

struct packet {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 nonfirst_fragment;
	__u8 first_fragment; /* offset 0 with more to come: its ports are the datagram's */
	__u16 l3_off;
	__u32 frag_id; /* IPv4 identification or IPv6 fragment header id */
	/* IP length from the header (0: unknown, e.g. BIG TCP): the frame may carry padding. */
	__u32 l3_len;
};

/*
 * Which side of a packet is side a of the flow key: a total order on (address, port)
 * pairs (only consistency matters). The TC and drop programs must agree on it.
 */
static __always_inline int endpoint_before(const struct packet *p)
{
	const __u64 *s = (const __u64 *)p->saddr, *d = (const __u64 *)p->daddr;

	if (s[0] != d[0])
		return s[0] < d[0];
	if (s[1] != d[1])
		return s[1] < d[1];
	return p->sport <= p->dport;
}

static __always_inline void ipv4_mapped(__u8 out[16], __u32 addr)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(&out[12], &addr, 4);
}

/* ICMP echo request/reply share their identifier; other messages use type/code. */
static __always_inline int parse_icmp(struct packet *p, void *l4, void *end, __u8 echo_req,
				      __u8 echo_rep)
{
	__u8 *h = l4;

	if ((void *)(h + 8) > end)
		return PARSE_BAD_L4;
	p->icmp_type = h[0];
	p->icmp_code = h[1];
	if (h[0] == echo_req || h[0] == echo_rep) {
		__u16 id = bpf_ntohs(*(__u16 *)(h + 4));
		p->sport = id;
		p->dport = id;
	} else {
		p->sport = (__u16)h[0] << 8 | h[1];
		p->dport = p->sport;
	}
	return PARSE_OK;
}

static __always_inline int parse_l4(struct packet *p, void *l4, void *end)
{
	if (p->nonfirst_fragment)
		return PARSE_OK;
	switch (p->proto) {
	case IPPROTO_TCP_: {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) > end)
			return PARSE_BAD_L4;
		p->sport = bpf_ntohs(t->source);
		p->dport = bpf_ntohs(t->dest);
		p->tcp_flags = ((__u8 *)t)[13];
		return PARSE_OK;
	}
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_: {
		/* UDP and SCTP both start with source and destination port. */
		__u16 *ports = l4;
		if ((void *)(ports + 2) > end)
			return PARSE_BAD_L4;
		p->sport = bpf_ntohs(ports[0]);
		p->dport = bpf_ntohs(ports[1]);
		return PARSE_OK;
	}
	case IPPROTO_ICMP_:
		return parse_icmp(p, l4, end, 8, 0);
	case IPPROTO_ICMPV6_:
		return parse_icmp(p, l4, end, 128, 129);
	}
	return PARSE_OK; /* other protocols: addresses only */
}

static __always_inline int parse_ipv4(struct packet *p, void *data, void *end, __u32 off)
{
	struct iphdr *ip = data + off;
	__u32 hlen;

	if ((void *)(ip + 1) > end)
		return PARSE_BAD_L3;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_BAD_L3;
	hlen = ip->ihl * 4;
	p->family = 4;
	p->proto = ip->protocol;
	p->l3_len = bpf_ntohs(ip->tot_len);
	ipv4_mapped(p->saddr, ip->saddr);
	ipv4_mapped(p->daddr, ip->daddr);
	p->nonfirst_fragment = (bpf_ntohs(ip->frag_off) & 0x1fff) != 0;
	p->first_fragment = (bpf_ntohs(ip->frag_off) & 0x3fff) == 0x2000; /* MF, offset 0 */
	p->frag_id = ip->id;
	off += hlen;
	if (off > PARSE_MAX_OFFSET)
		return PARSE_BAD_L3;
	if (data + off > end)
		return PARSE_BAD_L3; /* options run past the packet */
	return parse_l4(p, data + off, end);
}

static __always_inline int parse_ipv6(struct packet *p, void *data, void *end, __u32 off)
{
	struct ipv6hdr *ip6 = data + off;
	__u8 next;

	if ((void *)(ip6 + 1) > end)
		return PARSE_BAD_L3;
	if (ip6->version != 6)
		return PARSE_BAD_L3;
	p->family = 6;
	p->l3_len = ip6->payload_len ? sizeof(*ip6) + bpf_ntohs(ip6->payload_len) : 0;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	next = ip6->nexthdr;
	off += sizeof(*ip6);

	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		__u8 *h;

		if (off > PARSE_MAX_OFFSET)
			return PARSE_BAD_L3;
		h = data + off;
		switch (next) {
		case 0:	 /* hop-by-hop */
		case 43: /* routing */
		case 60: /* destination options */
			if ((void *)(h + 2) > end)
				return PARSE_BAD_L3;
			next = h[0];
			off += ((__u32)h[1] + 1) * 8;
			continue;
		case 51: /* AH: length in 4-octet units, minus 2 */
			if ((void *)(h + 2) > end)
				return PARSE_BAD_L3;
			next = h[0];
			off += ((__u32)h[1] + 2) * 4;
			continue;
		case 44: /* fragment */
			if ((void *)(h + 8) > end)
				return PARSE_BAD_L3;
			next = h[0];
			if (bpf_ntohs(*(__u16 *)(h + 2)) & 0xfff8)
				p->nonfirst_fragment = 1;
			else if (bpf_ntohs(*(__u16 *)(h + 2)) & 1)
				p->first_fragment = 1;
			p->frag_id = *(__u32 *)(h + 4);
			off += 8;
			continue;
		}
		break;
	}
	p->proto = next;
	if (off > PARSE_MAX_OFFSET)
		return PARSE_BAD_L3;
	if (data + off > end)
		return PARSE_BAD_L3;
	if (next == 0 || next == 43 || next == 60 || next == 51 || next == 44)
		return PARSE_BAD_L3; /* more extension headers than we walk */
	return parse_l4(p, data + off, end);
}

static __always_inline int parse_packet(struct packet *p, void *data, void *end)
{
	struct ethhdr *eth = data;
	__u32 off = ETH_HLEN_;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return PARSE_BAD_L2;
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		/* VLAN tag: TCI then the encapsulated EtherType. */
		__u16 *tag = data + off;
		if ((void *)(tag + 2) > end)
			return PARSE_BAD_L2;
		proto = tag[1];
		off += 4;
	}
	p->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP_))
		return parse_ipv4(p, data, end, off);
	if (proto == bpf_htons(ETH_P_IPV6_))
		return parse_ipv6(p, data, end, off);
	return PARSE_NON_IP;
}

#endif
