// SPDX-License-Identifier: Apache-2.0
// benchtool's BPF commands: run-time stats, the empty program, a flowlogd object's
// programs attached without the daemon (benchtool.c has the usage).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchtool.h"
#include "flow_record.h"

// tcx attach types (Linux 6.6); Debian's uapi headers predate them.
#define TCX_INGRESS_ 46
#define TCX_EGRESS_ 47

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	putchar('"');
}

static void list_programs(void)
{
	uint32_t id = 0;
	int first = 1;
	printf("{\"progs\":[");
	while (bpf_prog_get_next_id(id, &id) == 0) {
		int fd = bpf_prog_get_fd_by_id(id);
		if (fd < 0)
			continue; // unloaded meanwhile
		struct bpf_prog_info info;
		uint32_t len = sizeof(info);
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
			printf("%s{\"id\":%u,\"type\":%u,\"name\":", first ? "" : ",", info.id,
			       info.type);
			print_json_string(info.name);
			printf(",\"run_time_ns\":%llu,\"run_cnt\":%llu}",
			       (unsigned long long)info.run_time_ns,
			       (unsigned long long)info.run_cnt);
			first = 0;
		}
		close(fd);
	}
	printf("]}\n");
	fflush(stdout);
}

int cmd_stats(void)
{
	int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (fd < 0)
		die("BPF_ENABLE_STATS");
	printf("ready\n");
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof(line), stdin))
		list_programs();
	close(fd);
	return 0;
}

int cmd_empty(int argc, char **argv)
{
	struct bpf_insn prog[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K,
		 .dst_reg = BPF_REG_0,
		 .imm = -1}, /* TCX_NEXT */
		{.code = BPF_JMP | BPF_EXIT},
	};
	int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "bench_empty", "GPL", prog, 2, NULL);
	if (fd < 0)
		die("loading the empty program");
	for (int i = 0; i < argc; i++) {
		int ifindex = (int)if_nametoindex(argv[i]);
		int types[2] = {TCX_INGRESS_, TCX_EGRESS_};
		if (ifindex == 0)
			die(argv[i]);
		for (int t = 0; t < 2; t++)
			if (bpf_link_create(fd, ifindex, (enum bpf_attach_type)types[t], NULL) < 0)
				die("tcx attach");
	}
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
		die("program info");
	printf("ready %u\n", info.id);
	fflush(stdout);
	while (getchar() != EOF) {
	}
	return 0; // the links close with the process
}

// Per-CPU values of a map's key summed, as 64-bit counters from `offset` every `stride`
// bytes, `count` of them a CPU (sums[i] += ...); false if the map cannot be read.
static int sum_percpu(struct bpf_object *obj, const char *map, uint32_t key, size_t value_size,
		      size_t offset, size_t stride, size_t count, uint64_t *sums)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, map);
	int cpus = libbpf_num_possible_cpus();
	size_t rounded = (value_size + 7) & ~(size_t)7;
	unsigned char *values;
	int ok;

	if (!m || cpus <= 0 || !(values = calloc((size_t)cpus, rounded)))
		return 0;
	ok = bpf_map_lookup_elem(bpf_map__fd(m), &key, values) == 0;
	for (int c = 0; ok && c < cpus; c++)
		for (size_t i = 0; i < count; i++) {
			uint64_t v;
			memcpy(&v, values + (size_t)c * rounded + offset + i * stride, sizeof(v));
			sums[i] += v;
		}
	free(values);
	return ok;
}

// The packets a cache map's slots hold (packets[0] and packets[1] of every slot of
// every value, per CPU): hits no eviction has counted yet. 0 for a map the object lacks.
static uint64_t cache_live(struct bpf_object *obj, const char *map, uint32_t values,
			   size_t value_size, size_t packets_at, size_t slot_size, size_t slots)
{
	uint64_t *live = calloc(slots, sizeof(uint64_t)), total = 0;

	if (!live)
		return 0;
	for (uint32_t value = 0; value < values; value++)
		for (int d = 0; d < 2; d++) {
			memset(live, 0, slots * sizeof(uint64_t));
			sum_percpu(obj, map, value, value_size, packets_at + (size_t)d * 8,
				   slot_size, slots, live);
			for (size_t i = 0; i < slots; i++)
				total += live[i];
		}
	free(live);
	return total;
}

// The object's kernel counters under the daemon's names (addon/src/binding.cc), so the
// bench reads a variant's cache hit rate as it reads flowlogd's. A variant has no drain:
// the packets still in its cache slots are hits that no eviction has counted yet.
static void print_counters(struct bpf_object *obj)
{
	static const struct {
		const char *name;
		int stat;
	} shown[] = {
		{"cacheHits", FLOW_STAT_CACHE_HITS},
		{"cacheEvictions", FLOW_STAT_CACHE_EVICTIONS},
		{"ctLookups", FLOW_STAT_CT_LOOKUPS},
		{"ctHits", FLOW_STAT_CT_HITS},
		{"lostPackets", FLOW_STAT_LOST_PACKETS},
		{"insertE2big", FLOW_STAT_INSERT_E2BIG},
		{"overflowPackets", FLOW_STAT_OVERFLOW_PACKETS},
	};
	uint64_t stats[FLOW_STAT_MAX] = {0};
	int first = 1;

	for (uint32_t i = 0; i < FLOW_STAT_MAX; i++)
		sum_percpu(obj, "flow_stats", i, sizeof(uint64_t), 0, 0, 1, &stats[i]);
	stats[FLOW_STAT_CACHE_HITS] +=
		cache_live(obj, "flow_cache", 2 * FLOW_CACHE_VALUES, sizeof(struct flow_cache),
			   offsetof(struct flow_cache_slot, packets),
			   sizeof(struct flow_cache_slot), FLOW_CACHE_SLOTS);
	stats[FLOW_STAT_CACHE_HITS] +=
		cache_live(obj, "flow_cache6", 2 * FLOW_CACHE6_VALUES, sizeof(struct flow_cache6),
			   offsetof(struct flow_cache_slot6, packets),
			   sizeof(struct flow_cache_slot6), FLOW_CACHE6_SLOTS);
	printf("{");
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++, first = 0)
		printf("%s\"%s\":%llu", first ? "" : ",", shown[i].name,
		       (unsigned long long)stats[shown[i].stat]);
	printf("}\n");
	fflush(stdout);
}

// A development A/B: flowlogd_in / flowlogd_eg of a BPF object file on ingress / egress
// of IF by tcx links, with no addon (maps never drained: for a window of cost only).
int cmd_attach(const char *path, const char *ifname)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	int ifindex = (int)if_nametoindex(ifname);
	uint32_t ids[2];
	if (!obj || libbpf_get_error(obj))
		die(path);
	if (bpf_object__load(obj) != 0)
		die("loading the object");
	if (ifindex == 0)
		die(ifname);
	const char *names[2] = {"flowlogd_in", "flowlogd_eg"};
	int types[2] = {TCX_INGRESS_, TCX_EGRESS_};
	for (int t = 0; t < 2; t++) {
		struct bpf_program *prog = bpf_object__find_program_by_name(obj, names[t]);
		struct bpf_prog_info info;
		uint32_t len = sizeof(info);
		if (!prog)
			die(names[t]);
		if (bpf_link_create(bpf_program__fd(prog), ifindex, (enum bpf_attach_type)types[t],
				    NULL) < 0)
			die("tcx attach");
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0)
			die("program info");
		ids[t] = info.id;
	}
	printf("ready %u %u\n", ids[0], ids[1]);
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof(line), stdin))
		print_counters(obj);
	return 0;
}
