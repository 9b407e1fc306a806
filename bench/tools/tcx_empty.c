// SPDX-License-Identifier: Apache-2.0
// Benchmark helper (bench/datapath.bench.ts, part "hooks"): attaches an empty TC program
// (returns "next" at once) with tcx links on the ingress and egress of each interface
// named, prints "ready", and holds the links until stdin closes. It measures what the
// tcx hook costs by itself, the floor under any TC program's throughput cost.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

// tcx attach types (Linux 6.6); Debian's uapi headers predate them.
#define TCX_INGRESS 46
#define TCX_EGRESS 47

int main(int argc, char** argv) {
  struct bpf_insn prog[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = -1}, /* TCX_NEXT */
      {.code = BPF_JMP | BPF_EXIT},
  };
  int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "empty", "GPL", prog, 2, NULL);
  if (fd < 0) {
    fprintf(stderr, "tcx_empty: load: %s\n", strerror(errno));
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    int ifindex = (int)if_nametoindex(argv[i]);
    int types[2] = {TCX_INGRESS, TCX_EGRESS};
    for (int t = 0; t < 2; t++) {
      if (ifindex == 0 || bpf_link_create(fd, ifindex, (enum bpf_attach_type)types[t], NULL) < 0) {
        fprintf(stderr, "tcx_empty: attach to %s: %s\n", argv[i], strerror(errno));
        return 1;
      }
    }
  }
  printf("ready\n");
  fflush(stdout);
  while (getchar() != EOF) {
  }
  return 0;  // the links close with the process
}
