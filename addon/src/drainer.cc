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

// Six 8-byte words (the zero tail included), each mixed in by a multiply: the keys are
// addresses and ports, close together, so every byte must reach the high bits.
size_t Drainer::CacheKeyHash::operator()(const CacheKey& k) const noexcept {
  uint64_t h = k.len * 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < sizeof(k.bytes); i += 8) {
    uint64_t w;
    std::memcpy(&w, k.bytes + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return size_t(h);
}

Drainer::Drainer(const BpfObjects& bpf, RecordRing& ring, const std::atomic<bool>& closed, EventSink emit,
                 Journal* journal)
    : bpf_(bpf), ring_(ring), closed_(closed), emit_(std::move(emit)), journal_(journal) {
  batch_keys_.resize(kBatch);
  batch_keys4_.resize(kBatch);
  batch_values_.resize(kBatch);
  if (bpf_.drops()) drop_keys_.resize(kBatch);
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) throw sys_error("ERR_BPF_CPUS", -ncpus, "counting possible CPUs for per-CPU maps");
  cache_values_.resize(size_t(ncpus));
  cache6_values_.resize(size_t(ncpus));
  ncpus_ = size_t(ncpus);
  overflow_keys_.resize(kOverflowBatch);
  overflow_values_.resize(kOverflowBatch * ncpus_);
}

DrainCounters Drainer::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  DrainCounters c = counters_;
  if (journal_) {
    c.journal_bytes = journal_->bytes_written();
    c.journal_errors = journal_->write_errors();
    c.journal_skipped_cycles = journal_->skipped_cycles();
    c.journal_skipped_records = journal_->skipped_records();
    c.journal_disk_bytes = journal_->disk_bytes();
  }
  return c;
}

void Drainer::drain(uint32_t generation, uint64_t cycle, bool rotate) {
  int gen = int(generation & 1);
  generation_ = generation;
  cycle_records_ = 0;
  mono_to_unix_ns_ = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
  // Without a journal nothing needs the entries after they are read.
  bool del = journal_ == nullptr;
  bool became_full = false;
  if (journal_ && !journal_->begin_cycle(became_full) && became_full) {
    DatapathEvent ev{DatapathEvent::JournalFull};
    ev.message = "the drain journal holds " + std::to_string(journal_->disk_bytes() >> 20) +
                 " MiB, StateDirectoryMaxSizeMB's bound of " + std::to_string(journal_->max_bytes() >> 20) +
                 ": drain cycles are not journaled until a flush removes the segments it covers (a crash "
                 "meanwhile loses their counts; nothing is lost without one)";
    emit_(std::move(ev));
  }
  read_cache(gen);
  const flow_tc_bpf* s = bpf_.flows();
  bool ok = read_flows(bpf_map__fd(gen ? s->maps.flows4_1 : s->maps.flows4_0), true, del) &&
            read_flows(bpf_map__fd(gen ? s->maps.flows6_1 : s->maps.flows6_0), false, del) && read_overflow(gen, del) &&
            read_drops(gen, del);
  uint64_t lost = 0;
  for (auto& [k, slot] : cache_) lost += slot.packets[0] + slot.packets[1];
  cache_.clear();
  if (lost) {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.cache_merge_lost += lost;
  }
  if (!ok) return;  // closing with nobody reading
  ring_cycle_record c{};
  c.generation = generation;
  c.records = cycle_records_;
  c.cycle = cycle;
  if (journal_) {
    if (!journal_->end_cycle(c))
      emit_(error_event(journal_->last_errno(),
                        "writing drain cycle " + std::to_string(generation) +
                            " to the journal (a crash before the next flush would lose its counts)"));
    clear_generation(gen);  // complete in the journal now (or never will be): the kernel's copy goes
    if (rotate) c.segment_closed = journal_->rotate() + 1;
  } else {
    clear_cache(gen);
  }
  c.hdr.type = RING_RECORD_CYCLE;
  ring_.push(&c, closed_, [this] { emit_(DatapathEvent{DatapathEvent::Records}); });
}

void Drainer::discard(int gen) {
  uint64_t n = clear_generation(gen);
  std::lock_guard<std::mutex> lock(mu_);
  counters_.restart_discarded += n;
}

uint64_t Drainer::clear_generation(int gen) {
  const flow_tc_bpf* s = bpf_.flows();
  uint64_t n = clear_map(bpf_map__fd(gen ? s->maps.flows4_1 : s->maps.flows4_0), batch_keys4_.data(),
                         batch_values_.data(), kBatch);
  n += clear_map(bpf_map__fd(gen ? s->maps.flows6_1 : s->maps.flows6_0), batch_keys_.data(), batch_values_.data(),
                 kBatch);
  n += clear_map(bpf_map__fd(gen ? s->maps.flow_overflow_1 : s->maps.flow_overflow_0), overflow_keys_.data(),
                 overflow_values_.data(), kOverflowBatch);
  if (const drop_trace_bpf* d = bpf_.drops())
    n += clear_map(bpf_map__fd(gen ? d->maps.drops_1 : d->maps.drops_0), drop_keys_.data(), batch_values_.data(),
                   kBatch);
  clear_cache(gen);
  return n;
}

// Deletes every entry of a map nothing writes to; returns how many there were.
uint64_t Drainer::clear_map(int fd, void* keys, void* values, uint32_t batch) {
  uint32_t out_token = 0;
  bool first = true;
  uint64_t n = 0;
  for (;;) {
    uint32_t count = batch;
    uint32_t in_token = out_token;
    int err =
        bpf_map_lookup_and_delete_batch(fd, first ? nullptr : &in_token, &out_token, keys, values, &count, nullptr);
    int e = err ? errno : 0;
    first = false;
    n += count;
    if (err && e != ENOENT) {
      emit_(error_event(e, "deleting drained map entries"));
      break;
    }
    if (e == ENOENT) break;
  }
  return n;
}

// The generation's per-CPU cache slots (its values of each family's per-CPU array),
// summed by connection: added to their entries as the maps are read (the kernel's copy
// is not touched until the cycle is complete).
void Drainer::read_cache(int gen) {
  cache_.clear();
  const flow_tc_bpf* s = bpf_.flows();
  read_cache_family(bpf_map__fd(s->maps.flow_cache), uint32_t(gen) * FLOW_CACHE_VALUES, FLOW_CACHE_VALUES,
                    cache_values_);
  read_cache_family(bpf_map__fd(s->maps.flow_cache6), uint32_t(gen) * FLOW_CACHE6_VALUES, FLOW_CACHE6_VALUES,
                    cache6_values_);
}

template <typename Cache>
void Drainer::read_cache_family(int fd, uint32_t first, uint32_t values, std::vector<Cache>& per_cpu) {
  for (uint32_t idx = first; idx < first + values; idx++) {
    if (bpf_map_lookup_elem(fd, &idx, per_cpu.data()) != 0) {
      emit_(error_event(errno, "reading the flow cache (its counts for this drain are lost)"));
      continue;
    }
    for (const Cache& cpu : per_cpu)
      for (const auto& slot : cpu.slot) {
        if (slot.key.ifindex == 0 || (slot.packets[0] | slot.packets[1]) == 0) continue;
        Slot& acc = cache_[cache_key(slot.key)];
        for (int d = 0; d < 2; d++) {
          acc.packets[d] += slot.packets[d];
          acc.bytes[d] += slot.bytes[d];
        }
        acc.last_seen_ns = std::max<uint64_t>(acc.last_seen_ns, slot.last_seen_ns);
        acc.tcp_flags |= slot.tcp_flags;
      }
  }
}

// Empties the generation's caches: a slot left holding a key would take that connection's
// packets two flips from now without its map entry existing.
void Drainer::clear_cache(int gen) {
  const flow_tc_bpf* s = bpf_.flows();
  clear_cache_family(bpf_map__fd(s->maps.flow_cache), uint32_t(gen) * FLOW_CACHE_VALUES, FLOW_CACHE_VALUES,
                     cache_values_);
  clear_cache_family(bpf_map__fd(s->maps.flow_cache6), uint32_t(gen) * FLOW_CACHE6_VALUES, FLOW_CACHE6_VALUES,
                     cache6_values_);
}

template <typename Cache>
void Drainer::clear_cache_family(int fd, uint32_t first, uint32_t values, std::vector<Cache>& per_cpu) {
  std::memset(static_cast<void*>(per_cpu.data()), 0, per_cpu.size() * sizeof(Cache));
  for (uint32_t idx = first; idx < first + values; idx++) {
    if (bpf_map_update_elem(fd, &idx, per_cpu.data(), BPF_ANY) != 0 &&
        bpf_map_update_elem(fd, &idx, per_cpu.data(), BPF_ANY) != 0)
      emit_(error_event(errno, "emptying the flow cache"));
  }
}

bool Drainer::emit_record(const ring_flow_record& rec) {
  if (journal_) journal_->append(rec, generation_);
  cycle_records_++;
  return ring_.push(&rec, closed_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.ring_full_waits++;
    }
    emit_(DatapathEvent{DatapathEvent::Records});
  });
}

// One flow map's entries into the ring; false when closing without a reader.
bool Drainer::read_flows(int fd, bool ipv4, bool del) {
  void* keys = ipv4 ? static_cast<void*>(batch_keys4_.data()) : static_cast<void*>(batch_keys_.data());
  uint64_t merged = 0, merged_packets = 0, drained = 0;
  int64_t t0 = clock_ns(CLOCK_MONOTONIC);
  bool ok = read_batches(fd, keys, batch_values_.data(), kBatch, del, "flow map", [&](uint32_t i) {
    ring_flow_record rec{};
    rec.hdr.type = RING_RECORD_FLOW;
    rec.counters = batch_values_[i];
    if (ipv4)
      widen(batch_keys4_[i], rec.key);
    else
      rec.key = batch_keys_[i];
    if (!cache_.empty()) {
      auto it = cache_.find(ipv4 ? cache_key(batch_keys4_[i]) : cache_key(batch_keys_[i]));
      if (it != cache_.end()) {
        const Slot& slot = it->second;
        for (int d = 0; d < 2; d++) {
          rec.counters.packets[d] += slot.packets[d];
          rec.counters.bytes[d] += slot.bytes[d];
        }
        rec.counters.last_seen_ns = std::max<uint64_t>(rec.counters.last_seen_ns, slot.last_seen_ns);
        rec.counters.tcp_flags |= slot.tcp_flags;
        merged++;
        merged_packets += slot.packets[0] + slot.packets[1];
        cache_.erase(it);
      }
    }
    rec.counters.first_seen_ns += mono_to_unix_ns_;
    rec.counters.last_seen_ns += mono_to_unix_ns_;
    drained++;
    return emit_record(rec);
  });
  std::lock_guard<std::mutex> lock(mu_);
  counters_.drain_ns_total += clock_ns(CLOCK_MONOTONIC) - t0;
  counters_.records_drained += drained;
  counters_.cache_merged += merged;
  counters_.cache_merged_packets += merged_packets;
  return ok;
}

// Batched reads of a whole map (nothing writes to it now), deleting what they read when
// `del`; `fill(i)` turns entry i of the batch into records (false: stop, closing).
template <typename Fill>
bool Drainer::read_batches(int fd, void* keys, void* values, uint32_t batch, bool del, const char* what, Fill fill) {
  uint32_t out_token = 0;
  bool first = true;
  for (;;) {
    uint32_t count = batch;
    uint32_t in_token = out_token;
    int err = del ? bpf_map_lookup_and_delete_batch(fd, first ? nullptr : &in_token, &out_token, keys, values, &count,
                                                    nullptr)
                  : bpf_map_lookup_batch(fd, first ? nullptr : &in_token, &out_token, keys, values, &count, nullptr);
    int e = err ? errno : 0;
    first = false;
    if (err && e != ENOENT) {
      emit_(error_event(e, std::string("draining ") + what));
      return true;
    }
    for (uint32_t i = 0; i < count; i++)
      if (!fill(i)) return false;
    if (count) emit_(DatapathEvent{DatapathEvent::Records});
    if (e == ENOENT) return true;
  }
}

// The generation's overflow counts (maps.h flow_overflow_*), one ring record per
// (interface, protocol, family): counters.packets/bytes by hook, the drain's time as
// first/last seen.
bool Drainer::read_overflow(int gen, bool del) {
  const flow_tc_bpf* s = bpf_.flows();
  int fd = bpf_map__fd(gen ? s->maps.flow_overflow_1 : s->maps.flow_overflow_0);
  uint64_t drained = 0;
  uint64_t now = uint64_t(clock_ns(CLOCK_REALTIME));
  bool ok = read_batches(fd, overflow_keys_.data(), overflow_values_.data(), kOverflowBatch, del, "the overflow map",
                         [&](uint32_t i) {
                           ring_flow_record rec{};
                           rec.hdr.type = RING_RECORD_OVERFLOW;
                           rec.key.ifindex = overflow_keys_[i].ifindex;
                           rec.key.proto = overflow_keys_[i].proto;
                           rec.key.family = overflow_keys_[i].family;
                           for (size_t cpu = 0; cpu < ncpus_; cpu++) {
                             const overflow_counters& v = overflow_values_[i * ncpus_ + cpu];
                             for (int h = 0; h < 2; h++) {
                               rec.counters.packets[h] += v.packets[h];
                               rec.counters.bytes[h] += v.bytes[h];
                             }
                           }
                           rec.counters.initiator_how = FLOW_INIT_FIRST_PACKET;
                           rec.counters.first_seen_ns = rec.counters.last_seen_ns = now;
                           drained++;
                           return emit_record(rec);
                         });
  std::lock_guard<std::mutex> lock(mu_);
  counters_.overflow_records += drained;
  return ok;
}

// Policy drops of this generation, as flow records with their drop reason: after the
// flows, because JavaScript moves them from allow to deny.
bool Drainer::read_drops(int gen, bool del) {
  const drop_trace_bpf* d = bpf_.drops();
  if (!d) return true;
  int fd = bpf_map__fd(gen ? d->maps.drops_1 : d->maps.drops_0);
  uint64_t drained = 0;
  bool ok = read_batches(fd, drop_keys_.data(), batch_values_.data(), kBatch, del, "drop map", [&](uint32_t i) {
    ring_flow_record rec{};
    rec.hdr.type = RING_RECORD_FLOW;
    rec.key = drop_keys_[i].flow;
    rec.drop_reason = drop_keys_[i].reason;
    rec.counters = batch_values_[i];
    rec.counters.first_seen_ns += mono_to_unix_ns_;
    rec.counters.last_seen_ns += mono_to_unix_ns_;
    drained++;
    return emit_record(rec);
  });
  std::lock_guard<std::mutex> lock(mu_);
  counters_.records_drained += drained;
  return ok;
}

}  // namespace flowlogd
