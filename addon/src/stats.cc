// Stats. See stats.h.
#include "stats.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "drop_trace.skel.h"
#include "flow_tc.skel.h"

namespace flowlogd {

void read_kernel_stats(const BpfObjects& bpf, DatapathStats& s) {
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(ncpu > 0 ? ncpu : 1);
  auto sum_of = [&](int fd, uint32_t i, uint64_t& sum) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) return false;
    sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    return true;
  };
  int fd = bpf_map__fd(bpf.flows()->maps.flow_stats);
  for (uint32_t i = 0; i < FLOW_STAT_MAX; i++) sum_of(fd, i, s.kernel[i]);
  // The programs count cache hits when a slot is evicted; the slots merged at drains are the rest.
  s.kernel[FLOW_STAT_CACHE_HITS] += s.drain.cache_merged_packets;
  if (const drop_trace_bpf* d = bpf.drops()) {
    int rfd = bpf_map__fd(d->maps.drop_reasons);
    for (uint32_t i = 0; i < 256; i++) {
      uint64_t sum;
      if (sum_of(rfd, i, sum) && sum) s.drop_reasons.emplace_back(i, sum);
    }
  }
}

}  // namespace flowlogd
