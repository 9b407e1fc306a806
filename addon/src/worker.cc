// Worker. See worker.h.
#include "worker.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "drop_trace.skel.h"
#include "flow_tc.skel.h"

namespace flowlogd {

namespace {

// Waits until every program run that may have read the old generation has finished:
// TC programs run inside RCU read-side sections, and this membarrier command is a
// synchronize_rcu().
void wait_for_running_programs() {
  if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
    // nohz_full kernels refuse it; a program run is nanoseconds long.
    usleep(20000);
  }
}

}  // namespace

Worker::Worker(uint32_t drain_interval_ms) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw sys_error("ERR_EVENTFD", errno, "creating eventfd");
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (timer_fd_ < 0) {
    int e = errno;
    ::close(wake_fd_);
    throw sys_error("ERR_TIMERFD", e, "creating timerfd");
  }
  drain_interval_ms_ = drain_interval_ms;
  arm_timer(true);
}

void Worker::arm_timer(bool on) {
  itimerspec its{};
  if (on) {
    its.it_interval.tv_sec = drain_interval_ms_ / 1000;
    its.it_interval.tv_nsec = (drain_interval_ms_ % 1000) * 1000000L;
    its.it_value = its.it_interval;
  }
  timerfd_settime(timer_fd_, 0, &its, nullptr);  // all zero: disarmed
}

namespace {

bool map_empty(const bpf_map* m) {
  flow_key key;  // the larger of the two key types
  return bpf_map_get_next_key(bpf_map__fd(m), nullptr, &key) != 0;
}

}  // namespace

// A drain that found nothing: the node has no traffic on the watched interfaces. Rather
// than waking every interval to drain nothing, the thread disarms its timer and sleeps
// until the programs insert an entry (bpf/include/drain_wake.h), then drains one interval
// after that, as it would have. The flag is set before the current generation is looked
// at (both sequentially consistent), so an entry inserted meanwhile is seen here or sees
// the flag. A program can still read the flag just before this store becomes visible while
// its insert is not yet visible to the check (the store-load order x86 allows): that entry
// is then drained by the next insert's wake-up or by the flush's own drain request, its
// counts intact.
void Worker::try_sleep(flow_tc_bpf* flows, uint32_t current) {
  __atomic_store_n(&flows->bss->drain_asleep, 1, __ATOMIC_SEQ_CST);
  bool empty = current ? map_empty(flows->maps.flows4_1) && map_empty(flows->maps.flows6_1)
                       : map_empty(flows->maps.flows4_0) && map_empty(flows->maps.flows6_0);
  if (!empty) {
    __atomic_store_n(&flows->bss->drain_asleep, 0, __ATOMIC_SEQ_CST);
    return;
  }
  arm_timer(false);
  asleep_.store(true);
  sleeps_.fetch_add(1);
}

Worker::~Worker() {
  join();
  for (int fd : {wake_fd_, timer_fd_}) ::close(fd);
}

void Worker::start(Parts parts, const std::atomic<bool>& closed) {
  thread_ = std::thread([this, parts = std::move(parts), &closed]() mutable { run(std::move(parts), closed); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

uint64_t Worker::drain_cycles() const {
  std::lock_guard<std::mutex> lock(mu_);
  return drain_cycles_;
}

uint64_t Worker::request_drain(bool rotate) {
  uint64_t target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A drain already running may have flipped before the caller's last packets:
    // ask for the one after it.
    requested_cycle_ = std::max(requested_cycle_, completed_cycle_) + 1;
    target = requested_cycle_;
    if (rotate) rotate_at_ = std::max(rotate_at_, target);
  }
  wake();
  return target;
}

void Worker::stop() {
  if (stop_requested_ || !thread_.joinable()) return;
  stop_requested_ = true;
  stopping_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    requested_cycle_ = std::max(requested_cycle_, completed_cycle_ + 1);
  }
  wake();
}

void Worker::wake() {
  uint64_t one = 1;
  write(wake_fd_, &one, sizeof(one));
}

void Worker::run(Parts p, const std::atomic<bool>& closed) {
  pthread_setname_np(pthread_self(), "flowlogd-drain");  // in top, /proc/PID/task/*/comm
  flow_tc_bpf* flows = p.bpf.flows();
  drop_trace_bpf* drops = p.bpf.drops();
  Pins* pins = p.bpf.pins();
  // The generation the programs write: 0, or the adopted maps' (loader.cc set it).
  uint32_t gen = flows->bss->generation;
  if (pins && pins->adopted()) {
    // The other generation was the crashed (or stopped) run's last drain, cycle gen - 1.
    if (p.journal_last_generation == int64_t(uint32_t(gen - 1)))
      p.drainer.discard((gen + 1) & 1);  // complete in the journal: what is left is a copy
    else
      p.drainer.drain(gen - 1, 0, false);  // counts nobody journaled: drained as they are
  }
  // The programs' wake-ups (drain_wake.h); without it the thread never sleeps.
  ring_buffer* wakes = ring_buffer__new(
      bpf_map__fd(flows->maps.flow_wake), [](void*, void*, size_t) { return 0; }, nullptr, nullptr);
  pollfd fds[4] = {{p.links.fd(), POLLIN, 0},
                   {wake_fd_, POLLIN, 0},
                   {timer_fd_, POLLIN, 0},
                   {wakes ? ring_buffer__epoll_fd(wakes) : -1, POLLIN, 0}};
  struct FreeWakes {
    ring_buffer* rb;
    ~FreeWakes() { ring_buffer__free(rb); }
  } free_wakes{wakes};
  for (;;) {
    if (poll(fds, 4, -1) < 0 && errno != EINTR) {
      p.emit(error_event(errno, "datapath worker: poll"));
      p.emit(DatapathEvent{DatapathEvent::Stopped});  // nothing will drain any more: release waiters
      return;
    }
    if (closed.load()) return;
    if (fds[0].revents & POLLIN) p.links.read();
    uint64_t v;
    bool timer = (fds[2].revents & POLLIN) && read(timer_fd_, &v, sizeof(v)) > 0;
    if (fds[1].revents & POLLIN) read(wake_fd_, &v, sizeof(v));
    if (fds[3].revents & POLLIN) {
      ring_buffer__consume(wakes);
      if (asleep_.load()) {
        asleep_.store(false);
        arm_timer(true);  // the first drain one interval after the first entry
      }
    }

    bool stopping = stopping_.load();
    uint64_t target;
    bool rotate;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (timer && requested_cycle_ <= completed_cycle_) requested_cycle_ = completed_cycle_ + 1;
      target = requested_cycle_;
      if (target <= completed_cycle_ && !stopping) continue;
      rotate = rotate_at_ > completed_cycle_ && target >= rotate_at_;
    }
    if (stopping) p.detach_all();  // first, so nothing counts behind the final drain
    // Recorded before the flip: a restart after a crash in between drains both
    // generations' leftovers by what the journal holds (see Parts).
    if (pins) pins->set_generation(gen + 1);
    __atomic_store_n(&flows->bss->generation, gen + 1, __ATOMIC_SEQ_CST);
    if (drops) {
      // A packet is counted by TC and dropped microseconds later. Flipping the drop
      // program a grace period after TC puts the drop of every packet TC counted in the
      // old generation in the old generation too, so a blocked packet never shows as
      // allowed at a flush; at worst a drop lands one drain before its TC count, and the
      // aggregator's debt absorbs that.
      wait_for_running_programs();
      __atomic_store_n(&drops->bss->generation, gen + 1, __ATOMIC_SEQ_CST);
    }
    wait_for_running_programs();  // tracing programs run under RCU too
    DrainCounters before = p.drainer.counters();
    p.drainer.drain(gen, target, rotate && !stopping);
    DrainCounters after = p.drainer.counters();
    gen++;
    if (wakes && !stopping && !asleep_.load() && after.records_drained == before.records_drained &&
        after.overflow_records == before.overflow_records && after.cache_merged == before.cache_merged)
      try_sleep(flows, gen & 1);
    if (stopping) {
      // Nothing writes to either one now. The programs' generation stays, so a later
      // start on these pinned maps finds this one drained (its cycle's number).
      p.drainer.drain(gen, target, false);
      p.after_final_drain();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      completed_cycle_ = std::max(completed_cycle_, target);
      drain_cycles_++;
    }
    DatapathEvent ev{DatapathEvent::Cycle};
    ev.cycle = target;
    p.emit(std::move(ev));
    if (stopping) {
      p.emit(DatapathEvent{DatapathEvent::Stopped});
      return;
    }
  }
}

}  // namespace flowlogd
