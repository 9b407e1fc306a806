// Drainer. See drainer.h.
#include "drainer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "drop_trace.skel.h"
#include "flow_tc.skel.h"

namespace flowlogd {

namespace {

constexpr size_t kBatch = 8192;
constexpr size_t kOverflowBatch = 256;

// The IPv4 map's compact key, widened to the ring's flow_key (IPv4-mapped addresses).
void widen(const flow_key4& k4, flow_key& k) {
  k = flow_key{};
  k.ifindex = k4.ifindex;
  mapped4(k.addr_a, k4.addr_a);
  mapped4(k.addr_b, k4.addr_b);
  k.port_a = k4.port_a;
  k.port_b = k4.port_b;
  k.proto = k4.proto;
  k.family = 4;
}

}  // namespace

Drainer::Drainer(const BpfObjects& bpf, RecordRing& ring, const std::atomic<bool>& closed, EventSink emit)
    : bpf_(bpf), ring_(ring), closed_(closed), emit_(std::move(emit)) {
  batch_keys_.resize(kBatch);
  batch_keys4_.resize(kBatch);
  batch_values_.resize(kBatch);
  if (bpf_.drops()) drop_keys_.resize(kBatch);
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) throw sys_error("ERR_BPF_CPUS", -ncpus, "counting possible CPUs for per-CPU maps");
  cache_values_.resize(size_t(ncpus));
  ncpus_ = size_t(ncpus);
  overflow_keys_.resize(kOverflowBatch);
  overflow_values_.resize(kOverflowBatch * ncpus_);
}

DrainCounters Drainer::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void Drainer::drain(int gen) {
  mono_to_unix_ns_ = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
  merge_cache(gen);
  const flow_tc_bpf* s = bpf_.flows();
  if (drain_map(bpf_map__fd(gen ? s->maps.flows4_1 : s->maps.flows4_0), true))
    drain_map(bpf_map__fd(gen ? s->maps.flows6_1 : s->maps.flows6_0), false);
  drain_overflow(gen);
  drain_drops(gen);
}

// The generation's overflow counts (maps.h flow_overflow_*), one ring record per
// (interface, protocol, family): counters.packets/bytes by hook, the drain's time as
// first/last seen.
void Drainer::drain_overflow(int gen) {
  const flow_tc_bpf* s = bpf_.flows();
  int fd = bpf_map__fd(gen ? s->maps.flow_overflow_1 : s->maps.flow_overflow_0);
  uint32_t out_token = 0;
  bool first = true;
  uint64_t drained = 0;
  ring_flow_record rec{};
  rec.hdr.type = RING_RECORD_OVERFLOW;
  auto on_full = [this] { emit_(DatapathEvent{DatapathEvent::Records}); };
  uint64_t now = uint64_t(clock_ns(CLOCK_REALTIME));
  for (;;) {
    uint32_t count = kOverflowBatch;
    uint32_t in_token = out_token;
    int err = bpf_map_lookup_and_delete_batch(fd, first ? nullptr : &in_token, &out_token, overflow_keys_.data(),
                                              overflow_values_.data(), &count, nullptr);
    int e = err ? errno : 0;
    first = false;
    if (err && e != ENOENT) {
      emit_(error_event(e, "draining the overflow map"));
      break;
    }
    for (uint32_t i = 0; i < count; i++) {
      rec.key = flow_key{};
      rec.key.ifindex = overflow_keys_[i].ifindex;
      rec.key.proto = overflow_keys_[i].proto;
      rec.key.family = overflow_keys_[i].family;
      rec.counters = flow_counters{};
      for (size_t cpu = 0; cpu < ncpus_; cpu++) {
        const overflow_counters& v = overflow_values_[i * ncpus_ + cpu];
        for (int h = 0; h < 2; h++) {
          rec.counters.packets[h] += v.packets[h];
          rec.counters.bytes[h] += v.bytes[h];
        }
      }
      rec.counters.initiator_how = FLOW_INIT_FIRST_PACKET;
      rec.counters.first_seen_ns = rec.counters.last_seen_ns = now;
      if (!ring_.push(&rec, closed_, on_full)) return;
    }
    drained += count;
    if (count) emit_(DatapathEvent{DatapathEvent::Records});
    if (e == ENOENT) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  counters_.overflow_records += drained;
}

// Adds what the programs' per-CPU cache holds for this generation to the entries it
// belongs to, then empties it (the programs write there again after the next flip).
void Drainer::merge_cache(int gen) {
  const flow_tc_bpf* s = bpf_.flows();
  int cache_fd = bpf_map__fd(s->maps.flow_cache);
  int flows_fd = bpf_map__fd(gen ? s->maps.flows4_1 : s->maps.flows4_0);
  uint32_t idx = uint32_t(gen);
  bool read = bpf_map_lookup_elem(cache_fd, &idx, cache_values_.data()) == 0;
  if (!read) emit_(error_event(errno, "reading the flow cache (its counts for this drain are lost)"));
  uint64_t merged = 0, merged_packets = 0, lost = 0;
  for (const flow_cache& cpu : cache_values_) {
    if (!read) break;
    for (const flow_cache_slot& slot : cpu.slot) {
      if (slot.key.ifindex == 0 || (slot.packets[0] | slot.packets[1]) == 0) continue;
      flow_counters c;
      if (bpf_map_lookup_elem(flows_fd, &slot.key, &c) != 0) {
        lost += slot.packets[0] + slot.packets[1];
        continue;
      }
      for (int d = 0; d < 2; d++) {
        c.packets[d] += slot.packets[d];
        c.bytes[d] += slot.bytes[d];
      }
      c.last_seen_ns = std::max(c.last_seen_ns, slot.last_seen_ns);
      c.tcp_flags |= slot.tcp_flags;
      if (bpf_map_update_elem(flows_fd, &slot.key, &c, BPF_EXIST) != 0)
        lost += slot.packets[0] + slot.packets[1];
      else {
        merged++;
        merged_packets += slot.packets[0] + slot.packets[1];
      }
    }
  }
  // Emptied whatever happened above: a slot left holding a key would take that
  // connection's packets two flips from now without its map entry existing.
  std::memset(cache_values_.data(), 0, cache_values_.size() * sizeof(flow_cache));
  if (bpf_map_update_elem(cache_fd, &idx, cache_values_.data(), BPF_ANY) != 0 &&
      bpf_map_update_elem(cache_fd, &idx, cache_values_.data(), BPF_ANY) != 0)
    emit_(error_event(errno, "emptying the flow cache"));
  std::lock_guard<std::mutex> lock(mu_);
  counters_.cache_merged += merged;
  counters_.cache_merged_packets += merged_packets;
  counters_.cache_merge_lost += lost;
}

// Moves one map's entries into the ring; false when closing without a reader.
bool Drainer::drain_map(int fd, bool ipv4) {
  void* keys = ipv4 ? static_cast<void*>(batch_keys4_.data()) : static_cast<void*>(batch_keys_.data());
  return drain_batches(fd, keys, "flow map", [&](uint32_t i, ring_flow_record& rec) {
    if (ipv4)
      widen(batch_keys4_[i], rec.key);
    else
      rec.key = batch_keys_[i];
  });
}

// Batched lookup-and-delete of a whole map (nothing writes to it now) into ring records:
// `fill(i, rec)` sets entry i's key fields, the counters are copied with Unix times.
template <typename Fill>
bool Drainer::drain_batches(int fd, void* keys, const char* what, Fill fill) {
  uint32_t out_token = 0;
  bool first = true;
  uint64_t drained = 0;
  int64_t t0 = clock_ns(CLOCK_MONOTONIC);
  ring_flow_record rec{};
  rec.hdr.type = RING_RECORD_FLOW;
  auto on_full = [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.ring_full_waits++;
    }
    emit_(DatapathEvent{DatapathEvent::Records});
  };
  for (;;) {
    uint32_t count = kBatch;
    uint32_t in_token = out_token;
    int err = bpf_map_lookup_and_delete_batch(fd, first ? nullptr : &in_token, &out_token, keys, batch_values_.data(),
                                              &count, nullptr);
    int e = err ? errno : 0;
    first = false;
    if (err && e != ENOENT) {
      emit_(error_event(e, std::string("draining ") + what));
      break;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.drain_ns_total += clock_ns(CLOCK_MONOTONIC) - t0;
    }
    for (uint32_t i = 0; i < count; i++) {
      fill(i, rec);
      rec.counters = batch_values_[i];
      rec.counters.first_seen_ns += mono_to_unix_ns_;
      rec.counters.last_seen_ns += mono_to_unix_ns_;
      if (!ring_.push(&rec, closed_, on_full)) return false;
    }
    drained += count;
    if (count) emit_(DatapathEvent{DatapathEvent::Records});
    if (e == ENOENT) break;
    t0 = clock_ns(CLOCK_MONOTONIC);
  }
  std::lock_guard<std::mutex> lock(mu_);
  counters_.records_drained += drained;
  return true;
}

// Policy drops of this generation, as flow records with their drop reason.
void Drainer::drain_drops(int gen) {
  const drop_trace_bpf* d = bpf_.drops();
  if (!d) return;
  int fd = bpf_map__fd(gen ? d->maps.drops_1 : d->maps.drops_0);
  drain_batches(fd, drop_keys_.data(), "drop map", [&](uint32_t i, ring_flow_record& rec) {
    rec.key = drop_keys_[i].flow;
    rec.drop_reason = drop_keys_[i].reason;
  });
}

}  // namespace flowlogd
