// SPDX-License-Identifier: Apache-2.0
// What the parts of `flowlogd bench`'s native helper share (benchtool.c: the command
// line; benchtool_bpf.c: BPF stats and programs; benchtool_traffic.c: the generators).
#ifndef FLOWLOGD_BENCHTOOL_H
#define FLOWLOGD_BENCHTOOL_H

#include <stdint.h>

#define REQ_SIZE 64

_Noreturn void die(const char *what);
double now_s(void);
void report(uint64_t sent, uint64_t received, uint64_t errors, double seconds);

int cmd_stats(void);
int cmd_empty(int argc, char **argv);
int cmd_attach(const char *path, const char *ifname);

_Noreturn void cmd_server(int port, int echo);
int cmd_blast(const char *host, int port, int flows, int size, double seconds, double pps);
int cmd_pingpong(const char *host, int port, int flows, double seconds);
int cmd_tcprr(const char *host, int port, int parallel, double seconds);

#endif
