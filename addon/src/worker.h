// Worker: the datapath's thread. One poll loop over link events, drain requests and the
// drain timer; a drain flips the programs to the other map generation, waits until no
// program run can still be writing the old one, and hands it to the Drainer. Stopping
// detaches first, then drains both generations, so nothing counts behind the final drain.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "drainer.h"
#include "event.h"
#include "link_watcher.h"
#include "loader.h"

struct flow_tc_bpf;

namespace flowlogd {

class Worker {
 public:
  struct Parts {
    BpfObjects& bpf;
    LinkWatcher& links;
    Drainer& drainer;
    std::function<void()> detach_all;  // when stopping, before the final drains
    std::function<void()> after_final_drain;
    EventSink emit;
    // Adopted pinned maps: the last generation a complete journal cycle holds, or -1.
    // The other map generation is then either that cycle's leftovers (deleted) or counts
    // the crashed run never journaled (drained first).
    int64_t journal_last_generation;
  };

  // Creates the wake eventfd and the drain timer; throws DatapathError. No thread yet.
  explicit Worker(uint32_t drain_interval_ms);
  ~Worker();  // joins the thread (close() ended it first)
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the loop on its own thread until stopped or `closed` is set (then wake()).
  void start(Parts parts, const std::atomic<bool>& closed);
  // Returns the cycle number that will include every packet counted before this call.
  // `rotate`: the journal segment is closed after that cycle (a flush will cover it).
  uint64_t request_drain(bool rotate = false);
  // Asks the loop to detach, drain both generations and end (it emits Stopped); idempotent.
  void stop();
  void wake();
  void join();
  uint64_t drain_cycles() const;
  // The thread sleeps (no drain timer) until the programs insert an entry; and how many
  // times it went to sleep.
  bool asleep() const { return asleep_.load(); }
  uint64_t sleeps() const { return sleeps_.load(); }

 private:
  void run(Parts parts, const std::atomic<bool>& closed);
  // After a drain that found nothing: sleeps if the current generation is empty too.
  void try_sleep(flow_tc_bpf* flows, uint32_t current);
  void arm_timer(bool on);

  int wake_fd_ = -1;
  int timer_fd_ = -1;
  uint32_t drain_interval_ms_ = 0;
  std::atomic<bool> asleep_{false};
  std::atomic<uint64_t> sleeps_{0};
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool stop_requested_ = false;

  mutable std::mutex mu_;  // guards the cycle numbers
  uint64_t requested_cycle_ = 0;
  uint64_t completed_cycle_ = 0;
  uint64_t drain_cycles_ = 0;
  uint64_t rotate_at_ = 0;  // close the journal segment after the cycle that reaches this
};

}  // namespace flowlogd
