// Stats: what the datapath reports, from the kernel's per-CPU counters and its own.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "conntrack.h"
#include "drainer.h"
#include "flow_record.h"
#include "loader.h"

namespace flowlogd {

struct DatapathStats {
  uint64_t kernel[FLOW_STAT_MAX] = {};
  uint64_t drain_cycles = 0;
  uint64_t drain_sleeps = 0;  // times the drain thread went to sleep (nothing to drain)
  bool drain_asleep = false;
  DrainCounters drain;
  uint64_t attach_failures = 0;
  bool conntrack = false;  // the listener runs
  ConntrackStats ct;
  std::vector<std::pair<uint32_t, uint64_t>> drop_reasons;  // every kernel drop, by reason
};

// Sums the programs' per-CPU counters (flow_stats, and drop_reasons with drop tracing)
// into `s`; `s.drain` must be filled first (the cache merges count as cache hits).
void read_kernel_stats(const BpfObjects& bpf, DatapathStats& s);

}  // namespace flowlogd
