// SPDX-License-Identifier: Apache-2.0
// `flowlogd bench`'s native helper (src/bench/), shipped with the command: what Node
// cannot do by itself (bpf syscalls) and traffic at rates a Node generator cannot make.
//
//   benchtool stats                 BPF run-time stats on (BPF_ENABLE_STATS fd) while
//                                   stdin is open; prints "ready", then one JSON line of
//                                   every loaded program per line read. Closing stdin (or
//                                   dying) closes the fd: the kernel's setting is back to
//                                   what it was, whoever else holds it.
//   benchtool empty IF...           an empty TC program (returns "next" at once) on
//                                   ingress and egress of each IF by tcx links; prints
//                                   "ready ID", holds the links until stdin closes.
//   benchtool attach OBJ IF         flowlogd_in/_eg of a BPF object on IF (tcx), for A/B
//                                   runs of a variant; prints "ready ID ID", then one
//                                   JSON line of the object's kernel counters per line
//                                   read; holds the links until stdin closes
//   benchtool sink [-c CPU] PORT    UDP sink on PORT; TCP request/response and UDP echo
//   benchtool serve [-c CPU] PORT     server on PORT
//   benchtool blast [-c CPU] HOST PORT FLOWS SIZE SECONDS [PPS]  UDP from FLOWS sockets
//   benchtool pingpong [-c CPU] HOST PORT FLOWS SECONDS       UDP, one datagram in flight a flow
//   benchtool tcprr [-c CPU] HOST PORT PARALLEL SECONDS       TCP, a new connection a request
// Clients print one JSON line when done: {"sent":N,"received":N,"errors":N,"seconds":S}.
//
// benchtool_bpf.c holds the BPF commands, benchtool_traffic.c the generators.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "benchtool.h"

void die(const char *what)
{
	fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
	exit(1);
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void report(uint64_t sent, uint64_t received, uint64_t errors, double seconds)
{
	printf("{\"sent\":%llu,\"received\":%llu,\"errors\":%llu,\"seconds\":%.3f}\n",
	       (unsigned long long)sent, (unsigned long long)received, (unsigned long long)errors,
	       seconds);
	fflush(stdout);
}

static void pin_cpu(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die("sched_setaffinity");
}

static int usage(void)
{
	fprintf(stderr, "usage: benchtool stats | empty IF... | sink [-c CPU] PORT | serve [-c "
			"CPU] PORT |\n"
			"       blast [-c CPU] HOST PORT FLOWS SIZE SECONDS [PPS] | pingpong [-c "
			"CPU] HOST PORT FLOWS "
			"SECONDS |\n"
			"       tcprr [-c CPU] HOST PORT PARALLEL SECONDS\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) { // a socket a flow: 1,024 flows need more fds
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	const char *cmd = argv[1];
	argv += 2;
	argc -= 2;
	if (argc >= 2 && strcmp(argv[0], "-c") == 0) {
		pin_cpu(atoi(argv[1]));
		argv += 2;
		argc -= 2;
	}
	if (strcmp(cmd, "stats") == 0)
		return cmd_stats();
	if (strcmp(cmd, "empty") == 0 && argc >= 1)
		return cmd_empty(argc, argv);
	if (strcmp(cmd, "attach") == 0 && argc == 2)
		return cmd_attach(argv[0], argv[1]);
	if (strcmp(cmd, "sink") == 0 && argc == 1)
		cmd_server(atoi(argv[0]), 0);
	if (strcmp(cmd, "serve") == 0 && argc == 1)
		cmd_server(atoi(argv[0]), 1);
	if (strcmp(cmd, "blast") == 0 && (argc == 5 || argc == 6))
		return cmd_blast(argv[0], atoi(argv[1]), atoi(argv[2]), atoi(argv[3]),
				 atof(argv[4]), argc == 6 ? atof(argv[5]) : 0);
	if (strcmp(cmd, "pingpong") == 0 && argc == 4)
		return cmd_pingpong(argv[0], atoi(argv[1]), atoi(argv[2]), atof(argv[3]));
	if (strcmp(cmd, "tcprr") == 0 && argc == 4)
		return cmd_tcprr(argv[0], atoi(argv[1]), atoi(argv[2]), atof(argv[3]));
	return usage();
}
