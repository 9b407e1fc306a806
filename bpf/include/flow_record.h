/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one definition of flowlogd's binary records, shared by the eBPF programs (map
 * key/value), the addon (ring records to JavaScript) and TypeScript
 * (src/datapath/layout.ts, checked against this file by test/unit/datapath/layout.test.ts
 * through the addon's offsetof() table and the BPF object's BTF).
 *
 * Byte order: addresses are network order; every other field is host order.
 * Every struct has explicit padding so C, BTF and DataView agree on each offset.
 */
#ifndef FLOWLOGD_FLOW_RECORD_H
#define FLOWLOGD_FLOW_RECORD_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Which side of the canonical key sent a packet: a -> b or b -> a. */
#define FLOW_DIR_AB 0
#define FLOW_DIR_BA 1

#define FLOW_HOOK_INGRESS 0
#define FLOW_HOOK_EGRESS 1

/* How the initiator was decided, weakest first (src/datapath/types.ts InitiatorHow). */
#define FLOW_INIT_PORT_GUESS 0
#define FLOW_INIT_FIRST_PACKET 1
#define FLOW_INIT_CONNTRACK 2
#define FLOW_INIT_SYN 3

/*
 * One connection on one interface. Both directions map to the same key: side a is the
 * (address, port) pair that sorts first, so the key never depends on who sent.
 * IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d).
 * Ports: TCP/UDP/SCTP ports; ICMP echo: the identifier in both; other ICMP:
 * (type << 8 | code) in both; non-first fragments: 0.
 */
struct flow_key {
	__u32 ifindex;	 /*  0 */
	__u8 addr_a[16]; /*  4, network order */
	__u8 addr_b[16]; /* 20, network order */
	__u16 port_a;	 /* 36 */
	__u16 port_b;	 /* 38 */
	__u8 proto;	 /* 40, IANA protocol number */
	__u8 family;	 /* 41, 4 or 6 */
	__u8 _pad[2];	 /* 42 */
};			 /* 44 */

/*
 * The kernel's key for IPv4 connections: the same fields as flow_key with 4-byte
 * addresses. Hashing and comparing 20 bytes instead of 44 takes about 11 ns off every
 * packet (BENCHMARKS.md); the addon widens it to flow_key for the ring.
 */
struct flow_key4 {
	__u32 ifindex; /*  0 */
	__u32 addr_a;  /*  4, network order */
	__u32 addr_b;  /*  8, network order */
	__u16 port_a;  /* 12 */
	__u16 port_b;  /* 14 */
	__u8 proto;    /* 16 */
	__u8 _pad[3];  /* 17 */
};		       /* 20 */

/*
 * Counters for one key since the map generation it lives in was started (the addon
 * drains a generation as a whole, so these are deltas).
 */
struct flow_counters {
	__u64 packets[2];    /*  0, [FLOW_DIR_AB], [FLOW_DIR_BA] */
	__u64 bytes[2];	     /* 16, IP header + payload, as conntrack accounting counts */
	__u64 first_seen_ns; /* 32, map: CLOCK_MONOTONIC (coarse); ring: Unix ns */
	__u64 last_seen_ns;  /* 40, same clock as first_seen_ns */
	__u32 tcp_flags;     /* 48, bits 0-7 flags sent a -> b, bits 8-15 b -> a */
	__u8 initiator;	     /* 52, FLOW_DIR_AB: a initiated; FLOW_DIR_BA: b */
	__u8 initiator_how;  /* 53, FLOW_INIT_* */
	__u8 first_hook;     /* 54, FLOW_HOOK_* that saw the first packet */
	__u8 first_dir;	     /* 55, FLOW_DIR_* of the first packet */
	__u8 icmp_type;	     /* 56, first packet's ICMP type, else 0 */
	__u8 icmp_code;	     /* 57 */
	__u8 _pad[6];	     /* 58 */
};			     /* 64 */

/*
 * One slot of the per-CPU cache of recently counted IPv4 connections (maps.h,
 * bpf/include/flow_cache.h): counts not yet added to the connection's entry in
 * flows4_<generation>. The addon adds them before it drains that generation.
 * Two ways a set; FLOW_CACHE_SLOTS slots a per-CPU value (32 KiB, the largest value a
 * per-CPU map holds, PCPU_MIN_UNIT_SIZE), FLOW_CACHE_VALUES values a generation: 2,048
 * slots, 128 KiB a CPU per generation. With 512, 1,024 flows on one CPU (the sender's)
 * hit 35-39% of the time; with 2,048, 86-90%; 4,096 would make that 95% but cost
 * request/response traffic a few ns and 256 KiB a CPU per generation (BENCHMARKS.md).
 */
#define FLOW_CACHE_SLOTS 512
#define FLOW_CACHE_WAYS 2
#ifndef FLOW_CACHE_VALUES   /* a bench variant may choose another */
#define FLOW_CACHE_VALUES 4 /* per generation: keys gen * FLOW_CACHE_VALUES + 0..3 */
#endif
#define FLOW_CACHE_SETS (FLOW_CACHE_SLOTS * FLOW_CACHE_VALUES / FLOW_CACHE_WAYS)

struct flow_cache_slot {
	struct flow_key4 key; /*  0, ifindex 0: empty */
	__u32 tcp_flags;      /* 20, as flow_counters.tcp_flags */
	__u64 packets[2];     /* 24 */
	__u64 bytes[2];	      /* 40 */
	__u64 last_seen_ns;   /* 56 */
};			      /* 64 */

struct flow_cache {
	struct flow_cache_slot slot[FLOW_CACHE_SLOTS];
};

/*
 * The same cache for IPv6 connections, under the full key (maps.h flow_cache6): an
 * 88-byte slot, 256 a per-CPU value (22 KiB), FLOW_CACHE6_VALUES values a generation:
 * 1,024 slots, 88 KiB a CPU per generation. The fields are flow_cache_slot's, by name:
 * flow_cache.h's operations are written once for both (flow_cache_ops.h).
 */
#define FLOW_CACHE6_SLOTS 256
#ifndef FLOW_CACHE6_VALUES
#define FLOW_CACHE6_VALUES 4
#endif
#define FLOW_CACHE6_SETS (FLOW_CACHE6_SLOTS * FLOW_CACHE6_VALUES / FLOW_CACHE_WAYS)

struct flow_cache_slot6 {
	struct flow_key key; /*  0, ifindex 0: empty */
	__u32 tcp_flags;     /* 44, as flow_counters.tcp_flags */
	__u64 packets[2];    /* 48 */
	__u64 bytes[2];	     /* 64 */
	__u64 last_seen_ns;  /* 80 */
};			     /* 88 */

struct flow_cache6 {
	struct flow_cache_slot6 slot[FLOW_CACHE6_SLOTS];
};

/* Ring records from the addon to JavaScript: fixed 128-byte slots with a type tag. */
/*
 * Packets whose connection found the flow map full (maps.h flow_overflow_*): per
 * interface, protocol and family; [FLOW_HOOK_INGRESS] and [FLOW_HOOK_EGRESS] counts.
 */
struct overflow_key {
	__u32 ifindex; /* 0 */
	__u8 proto;    /* 4 */
	__u8 family;   /* 5, 4 or 6 */
	__u8 _pad[2];  /* 6 */
};		       /* 8 */

struct overflow_counters {
	__u64 packets[2]; /*  0, [FLOW_HOOK_*] */
	__u64 bytes[2];	  /* 16 */
};			  /* 32 */

#define RING_RECORD_SIZE 128
#define RING_RECORD_FLOW 1
#define RING_RECORD_CONNTRACK 2
/*
 * A ring_flow_record of overflow counts (struct overflow_key's fields in key: ifindex,
 * proto, family; addresses and ports zero; counters.packets/bytes by FLOW_HOOK_*, the
 * drain's time as first/last seen).
 */
#define RING_RECORD_OVERFLOW 3

/*
 * Packets the kernel dropped by policy after the TC program counted them (tp_btf/kfree_skb,
 * bpf/drop_trace.bpf.c): one entry per (interface, connection, drop reason) per map
 * generation, drained with the flow maps. The interface is the one whose TC program
 * counted the packet (its ingress interface, or the egress one for a TC egress drop).
 */
struct drop_key {
	struct flow_key flow; /*  0 */
	__u32 reason;	      /* 44, enum skb_drop_reason */
};			      /* 48 */

struct ring_record_header {
	__u32 type;	 /*  0, RING_RECORD_* */
	__u32 _reserved; /*  4 */
};

struct ring_flow_record {
	struct ring_record_header hdr; /*   0 */
	struct flow_key key;	       /*   8 */
	__u32 _pad;		       /*  52 */
	struct flow_counters counters; /*  56 */
	__u32 drop_reason;	       /* 120, 0: counted by TC; else the packets were dropped
					*      (enum skb_drop_reason) after TC counted them */
	__u32 _pad2;		       /* 124 */
};				       /* 128 */

/*
 * The end of one drain cycle (addon/src/worker.cc), after its records: in the ring (so
 * JavaScript knows where a flush's cycles end) and in the drain journal (the cycle's
 * records are complete there: README, "Restarts"). In the journal every 128-byte frame
 * carries the CRC-32 of its bytes (with the field zero) in hdr._reserved, and a flow or
 * overflow frame the generation of its cycle in _pad2.
 */
#define RING_RECORD_CYCLE 4

struct ring_cycle_record {
	struct ring_record_header hdr; /*   0 */
	__u64 generation;	       /*   8, the map generation counter this cycle drained */
	__u64 records;		       /*  16, flow and overflow records of the cycle */
	__u64 cycle;		       /*  24, the worker's cycle number (this run's) */
	__u64 segment_closed;	       /*  32, journal segment closed after it + 1; 0: none */
	__u8 _pad[88];		       /*  40 */
};				       /* 128 */

/*
 * Bumped when a pinned map's value changes meaning at the same sizes, or the set changes:
 * a restart adopts pinned maps only with this tag (addon/src/pins.cc). 2: flow_cache6
 * joined the set. An older build never pins it and, after a downgrade, would leave one
 * behind holding slots its own run never merges; with the tag, either way the set is
 * made anew (and the older build's leftover unpinned with the rest).
 */
#define FLOWLOGD_PIN_LAYOUT 2

/* Conntrack events (addon/src/conntrack.cc), from the host's or a chosen netns. */
#define CT_EVENT_NEW 1
#define CT_EVENT_DESTROY 2
#define CT_EVENT_DUMP 3	     /* existed at start or at a resync (a dump, not an event) */
#define CT_EVENT_DUMP_DONE 4 /* a complete dump ended; time_ns = when it was requested */

#define CT_FLAG_SYNTHETIC 0x01	   /* DESTROY inferred by a resync: no counters, time = resync */
#define CT_FLAG_COUNTERS 0x02	   /* packets/bytes are valid (nf_conntrack_acct=1) */
#define CT_FLAG_AFTER_OVERRUN 0x04 /* DUMP_DONE: events were lost since the previous dump */

/*
 * One direction of a conntrack entry. Addresses IPv4-mapped, network order; ports host
 * order. ICMP echo: the identifier in both ports; other ICMP: (type << 8 | code) in both,
 * as in struct flow_key.
 */
struct ct_tuple {
	__u8 src[16]; /*  0 */
	__u8 dst[16]; /* 16 */
	__u16 sport;  /* 32 */
	__u16 dport;  /* 34 */
};		      /* 36 */

struct ring_conntrack_record {
	struct ring_record_header hdr; /*   0 */
	__u8 event;		       /*   8, CT_EVENT_* */
	__u8 proto;		       /*   9 */
	__u8 family;		       /*  10, 4 or 6 */
	__u8 flags;		       /*  11, CT_FLAG_* */
	__u32 id;		       /*  12, conntrack id (unique among live entries) */
	struct ct_tuple orig;	       /*  16, as the initiator sent it (pre-DNAT destination) */
	struct ct_tuple reply;	       /*  52, as the responder answers (post-DNAT source) */
	__u64 packets[2];	       /*  88, [0] original, [1] reply direction (DESTROY: final) */
	__u64 bytes[2];		       /* 104 */
	__u64 time_ns;		       /* 120, Unix ns: event receipt, or conntrack's stop time */
};				       /* 128 */

/* Per-CPU failure and event counters (index into the flow_stats array map). */
enum flow_stat {
	FLOW_STAT_NON_IP = 0,	/* not IPv4/IPv6 (ARP, LLDP, ...) */
	FLOW_STAT_PARSE_L2,	/* truncated Ethernet/VLAN header */
	FLOW_STAT_PARSE_L3,	/* truncated or malformed IPv4/IPv6 header */
	FLOW_STAT_PARSE_L4,	/* truncated TCP/UDP/SCTP/ICMP header */
	FLOW_STAT_FRAGMENTS,	/* non-first fragments (ports from their first one, if seen) */
	FLOW_STAT_INSERT_E2BIG, /* map full */
	FLOW_STAT_INSERT_EBUSY, /* bucket lock contention / re-entrancy */
	FLOW_STAT_INSERT_ENOMEM,
	FLOW_STAT_INSERT_OTHER,
	FLOW_STAT_LOST_PACKETS, /* packets of failed inserts (not in any flow) */
	FLOW_STAT_LOST_BYTES,
	FLOW_STAT_CT_LOOKUPS, /* conntrack lookups to find a mid-stream initiator */
	FLOW_STAT_CT_HITS,
	FLOW_STAT_DROPS_POLICY,	   /* policy drops on watched interfaces (deny records) */
	FLOW_STAT_DROPS_UNWATCHED, /* policy drops on interfaces we do not watch */
	FLOW_STAT_DROPS_OTHER,	   /* non-policy drops (no socket, queue full, ...) */
	FLOW_STAT_DROP_INSERT_FAILED,
	FLOW_STAT_CACHE_HITS, /* packets counted in the per-CPU cache (no hash lookup), added at
				 eviction */
	FLOW_STAT_CACHE_EVICTIONS,  /* cache slots added to their entry for another connection,
				       or at their connection's FIN or RST */
	FLOW_STAT_OVERFLOW_PACKETS, /* packets of failed inserts counted in an overflow record */
	FLOW_STAT_OVERFLOW_BYTES,
	FLOW_STAT_MAX,
};

#endif
