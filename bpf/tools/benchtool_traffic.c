// SPDX-License-Identifier: Apache-2.0
// benchtool's traffic: the servers and the generators of `flowlogd bench lab`'s
// scenarios (src/bench/scenarios.ts), in C because a Node generator tops out far below
// what one flow of small datagrams reaches.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchtool.h"

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
_Noreturn void cmd_server(int port, int echo)
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
int cmd_blast(const char *host, int port, int flows, int size, double seconds, double pps)
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

int cmd_pingpong(const char *host, int port, int flows, double seconds)
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
int cmd_tcprr(const char *host, int port, int parallel, double seconds)
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
