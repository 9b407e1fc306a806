// Drainer: moves one map generation, which the programs no longer write, into the record
// ring. It first adds what the per-CPU connection cache holds for that generation to the
// entries it belongs to, then reads and deletes the maps in batches, widening IPv4 keys
// and turning monotonic times into Unix times on the way. The packets of connections that
// found a map full come after the flows, summed over CPUs, as overflow records.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "event.h"
#include "flow_record.h"
#include "loader.h"
#include "record_ring.h"

namespace flowlogd {

struct DrainCounters {
  uint64_t records_drained = 0;
  uint64_t drain_ns_total = 0;  // time spent in batched map reads
  uint64_t ring_full_waits = 0;
  uint64_t cache_merged = 0;          // cache slots added to their entries before a drain
  uint64_t cache_merged_packets = 0;  // and the packets they held (counted as cache hits)
  uint64_t cache_merge_lost = 0;      // packets of slots whose entry was gone (never expected)
  uint64_t overflow_records = 0;      // overflow records (interface, protocol, family) drained
};

class Drainer {
 public:
  // `closed` abandons a push waiting on a full ring (nobody reads it any more).
  Drainer(const BpfObjects& bpf, RecordRing& ring, const std::atomic<bool>& closed, EventSink emit);

  // The flows of generation `gen` (0 or 1); then, with drop tracing, its drops: they
  // come after the flows because JavaScript moves them from allow to deny.
  void drain(int gen);
  DrainCounters counters() const;

 private:
  void merge_cache(int gen);
  bool drain_map(int fd, bool ipv4);
  template <typename Fill>
  bool drain_batches(int fd, void* keys, const char* what, Fill fill);
  void drain_drops(int gen);
  void drain_overflow(int gen);

  const BpfObjects& bpf_;
  RecordRing& ring_;
  const std::atomic<bool>& closed_;
  EventSink emit_;
  int64_t mono_to_unix_ns_ = 0;
  std::vector<flow_key> batch_keys_;
  std::vector<flow_key4> batch_keys4_;
  std::vector<flow_counters> batch_values_;
  std::vector<drop_key> drop_keys_;
  std::vector<flow_cache> cache_values_;  // one per possible CPU
  std::vector<overflow_key> overflow_keys_;
  std::vector<overflow_counters> overflow_values_;  // per CPU: ncpus per key
  size_t ncpus_ = 0;

  mutable std::mutex mu_;  // guards counters_ (read by stats())
  DrainCounters counters_;
};

}  // namespace flowlogd
