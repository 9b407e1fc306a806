// Ring of fixed-size records between the producers (the drain worker and the conntrack
// listener, serialised by a producer mutex) and the JavaScript thread (single consumer). The producer waits when the
// ring is full instead of dropping: records hold counts the kernel no longer has, and while the producer waits the
// kernel keeps counting in its current map generation.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "flow_record.h"

namespace flowlogd {

class RecordRing {
 public:
  explicit RecordRing(size_t capacity_records)
      : capacity_(capacity_records), slots_(capacity_records * RING_RECORD_SIZE) {}

  size_t capacity() const { return capacity_; }
  size_t size() const { return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire); }

  // Producer: copies one record in. Waits while full unless `abandon` becomes true
  // (then returns false). `on_full` runs once per wait so the consumer can be told.
  template <typename OnFull>
  bool push(const void* record, const std::atomic<bool>& abandon, OnFull on_full) {
    std::lock_guard<std::mutex> producer(push_mu_);
    uint64_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) == capacity_) {
      on_full();
      std::unique_lock<std::mutex> lock(mu_);
      while (head - tail_.load(std::memory_order_acquire) == capacity_) {
        if (abandon.load()) return false;
        space_cv_.wait_for(lock, std::chrono::milliseconds(50));
      }
    }
    std::memcpy(&slots_[(head % capacity_) * RING_RECORD_SIZE], record, RING_RECORD_SIZE);
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  // Consumer: copies up to `max` records out; returns how many.
  size_t pop(uint8_t* out, size_t max) {
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    uint64_t head = head_.load(std::memory_order_acquire);
    size_t n = 0;
    while (tail != head && n < max) {
      size_t slot = tail % capacity_;
      size_t run = std::min<size_t>({head - tail, max - n, capacity_ - slot});
      std::memcpy(out + n * RING_RECORD_SIZE, &slots_[slot * RING_RECORD_SIZE], run * RING_RECORD_SIZE);
      n += run;
      tail += run;
    }
    tail_.store(tail, std::memory_order_release);
    if (n) {
      std::lock_guard<std::mutex> lock(mu_);
      space_cv_.notify_all();
    }
    return n;
  }

 private:
  const size_t capacity_;
  std::vector<uint8_t> slots_;
  std::atomic<uint64_t> head_{0};
  std::atomic<uint64_t> tail_{0};
  std::mutex push_mu_;  // producers: the drain worker and the conntrack listener
  std::mutex mu_;
  std::condition_variable space_cv_;
};

}  // namespace flowlogd
