/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Waking the addon's drain thread (addon/src/worker.cc). When a drain leaves the current
 * map generation empty, the thread sets drain_asleep and sleeps with no timer; the first
 * entry inserted after that sends one record on flow_wake, whose readiness wakes the
 * thread, and it drains one interval later. A node with no traffic thus never wakes the
 * daemon to drain nothing. The flag is read only where an entry was just inserted (a
 * connection's first packet in a generation), never on the path every packet takes.
 */
#pragma once

volatile __u32 drain_asleep;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* one page: a record is only ever a wake-up */
} flow_wake SEC(".maps");

static __noinline void drain_wake(void)
{
	__u32 one = 1;

	drain_asleep = 0; /* CPUs racing here send a record each: harmless */
	bpf_ringbuf_output(&flow_wake, &one, sizeof(one), BPF_RB_FORCE_WAKEUP);
}

#define DRAIN_WAKE_ON_INSERT()                                                                     \
	do {                                                                                       \
		if (drain_asleep)                                                                  \
			drain_wake();                                                              \
	} while (0)
