// Drainer: moves one map generation, which the programs no longer write, into the record
// ring. It reads the maps in batches, adding what the per-CPU connection cache holds for
// that generation to the entries it belongs to, widening IPv4 keys and turning monotonic
// times into Unix times on the way; the packets of connections that found a map full
// come after the flows, summed over CPUs, as overflow records, then the policy drops.
// With a journal (journal.h) every record is also appended there, and the entries are
// deleted only once the cycle is complete in it: a crash at any moment leaves each
// count either in the kernel map or in a complete journal cycle, never both. Without
// one, the maps are read and deleted in one pass. A cycle ends with a cycle record.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "event.h"
#include "flow_record.h"
#include "journal.h"
#include "loader.h"
#include "record_ring.h"

namespace flowlogd {

struct DrainCounters {
  uint64_t records_drained = 0;
  uint64_t drain_ns_total = 0;  // time spent in batched map reads
  uint64_t ring_full_waits = 0;
  uint64_t cache_merged = 0;             // cache slots added to their entries before a drain
  uint64_t cache_merged_packets = 0;     // and the packets they held (counted as cache hits)
  uint64_t cache_merge_lost = 0;         // packets of slots whose entry was gone (never expected)
  uint64_t overflow_records = 0;         // overflow records (interface, protocol, family) drained
  uint64_t journal_bytes = 0;            // written to the journal
  uint64_t journal_errors = 0;           // cycles the journal could not hold (a crash would lose them)
  uint64_t journal_skipped_cycles = 0;   // cycles not journaled: the journal at its bound
  uint64_t journal_skipped_records = 0;  // and their records
  uint64_t journal_disk_bytes = 0;       // the segments on disk at the last cycle's start
  uint64_t restart_discarded = 0;        // adopted entries a complete journal cycle held already
};

class Drainer {
 public:
  // `closed` abandons a push waiting on a full ring (nobody reads it any more).
  // `journal` may be null.
  Drainer(const BpfObjects& bpf, RecordRing& ring, const std::atomic<bool>& closed, EventSink emit, Journal* journal);

  // One cycle: map generation `generation & 1` (the counter the programs were flipped
  // away from), as this run's cycle `cycle`; `rotate`: close the journal segment after it.
  void drain(uint32_t generation, uint64_t cycle, bool rotate);
  // At a restart on adopted maps: deletes what is left in map generation `gen` (a
  // complete journal cycle holds it already).
  void discard(int gen);
  DrainCounters counters() const;

 private:
  // A cache key by value: a flow_key4's 20 bytes or a flow_key's 44, with its length, so
  // the two families never collide; the rest zero. A drain looks up every entry it reads
  // (100k a second at 100k connections): no allocation for it, as a std::string key was.
  struct CacheKey {
    uint8_t len = 0;
    alignas(8) uint8_t bytes[48] = {};
    bool operator==(const CacheKey& o) const { return len == o.len && std::memcmp(bytes, o.bytes, len) == 0; }
  };
  struct CacheKeyHash {
    size_t operator()(const CacheKey& k) const noexcept;
  };
  template <typename Key>
  static CacheKey cache_key(const Key& k) {
    static_assert(sizeof(Key) <= sizeof(CacheKey::bytes), "a flow key fits a cache key");
    CacheKey c;
    c.len = uint8_t(sizeof(Key));
    std::memcpy(c.bytes, &k, sizeof(Key));
    return c;
  }
  struct Slot {
    uint64_t packets[2];
    uint64_t bytes[2];
    uint64_t last_seen_ns;
    uint32_t tcp_flags;
  };
  void read_cache(int gen);
  template <typename Cache>
  void read_cache_family(int fd, uint32_t first, uint32_t values, std::vector<Cache>& per_cpu);
  void clear_cache(int gen);
  template <typename Cache>
  void clear_cache_family(int fd, uint32_t first, uint32_t values, std::vector<Cache>& per_cpu);
  uint64_t clear_generation(int gen);  // every map of it emptied; returns the entries there were
  bool read_flows(int fd, bool ipv4, bool del);
  template <typename Fill>
  bool read_batches(int fd, void* keys, void* values, uint32_t batch, bool del, const char* what, Fill fill);
  bool read_overflow(int gen, bool del);
  bool read_drops(int gen, bool del);
  uint64_t clear_map(int fd, void* keys, void* values, uint32_t batch);
  bool emit_record(const ring_flow_record& rec);

  const BpfObjects& bpf_;
  RecordRing& ring_;
  const std::atomic<bool>& closed_;
  EventSink emit_;
  Journal* journal_;
  int64_t mono_to_unix_ns_ = 0;
  uint32_t generation_ = 0;
  uint64_t cycle_records_ = 0;
  std::vector<flow_key> batch_keys_;
  std::vector<flow_key4> batch_keys4_;
  std::vector<flow_counters> batch_values_;
  std::vector<drop_key> drop_keys_;
  std::vector<flow_cache> cache_values_;    // one per possible CPU
  std::vector<flow_cache6> cache6_values_;  // one per possible CPU
  // The generation's caches, by key (CacheKey).
  std::unordered_map<CacheKey, Slot, CacheKeyHash> cache_;
  std::vector<overflow_key> overflow_keys_;
  std::vector<overflow_counters> overflow_values_;  // per CPU: ncpus per key
  size_t ncpus_ = 0;

  mutable std::mutex mu_;  // guards counters_ (read by stats())
  DrainCounters counters_;
};

}  // namespace flowlogd
