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
//                                   runs of a variant; prints "ready ID ID", holds
//   benchtool sink [-c CPU] PORT    UDP sink on PORT; TCP request/response and UDP echo
//   benchtool serve [-c CPU] PORT     server on PORT
//   benchtool blast [-c CPU] HOST PORT FLOWS SIZE SECONDS [PPS]  UDP from FLOWS sockets
//   benchtool pingpong [-c CPU] HOST PORT FLOWS SECONDS       UDP, one datagram in flight a flow
//   benchtool tcprr [-c CPU] HOST PORT PARALLEL SECONDS       TCP, a new connection a request
// Clients print one JSON line when done: {"sent":N,"received":N,"errors":N,"seconds":S}.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// tcx attach types (Linux 6.6); Debian's uapi headers predate them.
#define TCX_INGRESS_ 46
#define TCX_EGRESS_ 47
#define REQ_SIZE 64

static void die(const char *what)
{
	fprintf(stderr, "benchtool: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

// ---- BPF stats and program listing ----

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

static int cmd_stats(void)
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

static int cmd_empty(int argc, char **argv)
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

// A development A/B: flowlogd_in / flowlogd_eg of a BPF object file on ingress / egress
// of IF by tcx links, with no addon (maps never drained: for a window of cost only).
static int cmd_attach(const char *path, const char *ifname)
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
	while (getchar() != EOF) {
	}
	return 0;
}

// ---- traffic ----

static socklen_t resolve(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		return sizeof(*a4);
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		return sizeof(*a6);
	}
	fprintf(stderr, "benchtool: %s: not an IPv4 or IPv6 address\n", host);
	exit(2);
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void report(uint64_t sent, uint64_t received, uint64_t errors, double seconds)
{
	printf("{\"sent\":%llu,\"received\":%llu,\"errors\":%llu,\"seconds\":%.3f}\n",
	       (unsigned long long)sent, (unsigned long long)received, (unsigned long long)errors,
	       seconds);
	fflush(stdout);
}

static int listen_on(int type, int port)
{
	int fd = socket(AF_INET6, type, 0);
	int zero = 0, one = 1;
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("bind");
	if (type == SOCK_STREAM && listen(fd, 4096) != 0)
		die("listen");
	nonblock(fd);
	return fd;
}

// UDP: swallow (sink) or echo every datagram; TCP (serve): read one request, answer it,
// close. One thread, epoll.
static _Noreturn void cmd_server(int port, int echo)
{
	int udp = listen_on(SOCK_DGRAM, port);
	int tcp = echo ? listen_on(SOCK_STREAM, port) : -1;
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = udp};
	int rcvbuf = 4 << 20;
	setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev);
	if (tcp >= 0) {
		ev.data.fd = tcp;
		epoll_ctl(ep, EPOLL_CTL_ADD, tcp, &ev);
	}
	printf("ready\n");
	fflush(stdout);
	char buf[2048];
	struct mmsghdr msgs[64];
	struct iovec iov[64];
	struct sockaddr_storage from[64];
	char bufs[64][256];
	for (int i = 0; i < 64; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == udp) {
				for (int k = 0; k < 64; k++) {
					msgs[k].msg_hdr.msg_name = &from[k];
					msgs[k].msg_hdr.msg_namelen = sizeof(from[k]);
				}
				int got = recvmmsg(udp, msgs, 64, MSG_DONTWAIT, NULL);
				if (got > 0 && echo) {
					for (int k = 0; k < got; k++)
						iov[k].iov_len = msgs[k].msg_len;
					sendmmsg(udp, msgs, (unsigned)got, MSG_DONTWAIT);
					for (int k = 0; k < got; k++)
						iov[k].iov_len = sizeof(bufs[k]);
				}
			} else if (fd == tcp) {
				for (;;) {
					int c = accept4(tcp, NULL, NULL, SOCK_NONBLOCK);
					if (c < 0)
						break;
					struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
				}
			} else {
				ssize_t r = read(fd, buf, sizeof(buf));
				if (r > 0) {
					memset(buf, 0x5a, REQ_SIZE);
					if (write(fd, buf, REQ_SIZE) < 0) {
					}
				}
				if (r > 0 || (r < 0 && errno != EAGAIN) || r == 0)
					close(fd); // the server closes
			}
		}
	}
}

// At `pps` datagrams a second if given (paced each millisecond), else as fast as it goes.
static int cmd_blast(const char *host, int port, int flows, int size, double seconds, double pps)
{
	struct sockaddr_storage dst;
	socklen_t dlen = resolve(host, port, &dst);
	int *fds = calloc((size_t)flows, sizeof(int));
	char payload[1500];
	uint64_t sent = 0, errors = 0;
	if (size < 1 || size > (int)sizeof(payload))
		size = 18;
	memset(payload, 0x11, sizeof(payload));
	for (int i = 0; i < flows; i++) {
		fds[i] = socket(dst.ss_family, SOCK_DGRAM, 0);
		if (fds[i] < 0)
			die("socket (raise the open-files limit for many flows)");
		if (connect(fds[i], (struct sockaddr *)&dst, dlen) != 0)
			die("connect");
		nonblock(fds[i]);
	}
	double t0 = now_s(), end = t0 + seconds;
	for (uint64_t n = 0;; n++) {
		if (pps > 0) {
			double due = t0 + (double)n / pps, t;
			while ((t = now_s()) < due) {
				struct timespec ts = {0, (long)((due - t) * 1e9)};
				nanosleep(&ts, NULL);
			}
			if (t >= end)
				break;
		} else if ((n & 1023) == 0 && now_s() >= end)
			break;
		if (send(fds[n % (uint64_t)flows], payload, (size_t)size, 0) == size)
			sent++;
		else
			errors++;
	}
	report(sent, 0, errors, now_s() - t0);
	return 0;
}

static int cmd_pingpong(const char *host, int port, int flows, double seconds)
{
	struct sockaddr_storage dst;
	socklen_t dlen = resolve(host, port, &dst);
	int ep = epoll_create1(0);
	char buf[REQ_SIZE];
	uint64_t sent = 0, received = 0, errors = 0;
	memset(buf, 0x22, sizeof(buf));
	for (int i = 0; i < flows; i++) {
		int fd = socket(dst.ss_family, SOCK_DGRAM, 0);
		if (fd < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *)&dst, dlen) != 0)
			die("connect");
		nonblock(fd);
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		if (send(fd, buf, sizeof(buf), 0) == sizeof(buf))
			sent++;
	}
	double t0 = now_s(), end = t0 + seconds;
	while (now_s() < end) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, 100);
		if (n == 0) {
			// A datagram lost (queue full): every flow sends again, so none stays
			// silent.
			errors++;
			continue;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			while (recv(fd, buf, sizeof(buf), 0) > 0)
				received++;
			if (send(fd, buf, sizeof(buf), 0) == sizeof(buf))
				sent++;
		}
	}
	report(sent, received, errors, now_s() - t0);
	return 0;
}

struct rr_conn {
	int fd;
	int state; // 0: connecting, 1: waiting for the reply
};

static int rr_open(int ep, const struct sockaddr_storage *dst, socklen_t dlen, struct rr_conn *c)
{
	int one = 1;
	c->fd = socket(dst->ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = 0;
	if (connect(c->fd, (const struct sockaddr *)dst, dlen) != 0 && errno != EINPROGRESS) {
		close(c->fd);
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	return 0;
}

// A new connection a request: connect, send REQ_SIZE bytes, read the answer until the
// server closes, close; PARALLEL of them in flight.
static int cmd_tcprr(const char *host, int port, int parallel, double seconds)
{
	struct sockaddr_storage dst;
	socklen_t dlen = resolve(host, port, &dst);
	int ep = epoll_create1(0);
	struct rr_conn *conns = calloc((size_t)parallel, sizeof(*conns));
	char buf[2048];
	uint64_t sent = 0, received = 0, errors = 0;
	memset(buf, 0x33, sizeof(buf));
	for (int i = 0; i < parallel; i++)
		if (rr_open(ep, &dst, dlen, &conns[i]) != 0)
			errors++;
	double t0 = now_s(), end = t0 + seconds;
	while (now_s() < end) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct rr_conn *c = evs[i].data.ptr;
			int done = 0;
			if (c->state == 0 && (evs[i].events & EPOLLOUT)) {
				int err = 0;
				socklen_t l = sizeof(err);
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
				if (err || write(c->fd, buf, REQ_SIZE) != REQ_SIZE) {
					errors++;
					done = 1;
				} else {
					sent++;
					c->state = 1;
					struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			} else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				ssize_t r;
				while ((r = read(c->fd, buf, sizeof(buf))) > 0) {
				}
				if (r == 0) {
					received++;
					done = 1;
				} else if (errno != EAGAIN) {
					errors++;
					done = 1;
				}
			}
			if (done) {
				close(c->fd);
				if (rr_open(ep, &dst, dlen, c) != 0)
					errors++;
			}
		}
	}
	report(sent, received, errors, now_s() - t0);
	return 0;
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
