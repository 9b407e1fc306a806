// flowlogd datapath core. See datapath.h for the parts and the lifecycle.
#include "datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <utility>

#include "drop_trace.skel.h"
#include "flow_tc.skel.h"

namespace flowlogd {

static_assert(sizeof(flow_key) == 44, "flow_key layout changed: update src/datapath/layout.ts");
static_assert(sizeof(flow_key4) == 20, "flow_key4 is the IPv4 map key");
static_assert(sizeof(flow_counters) == 64, "flow_counters layout changed: update src/datapath/layout.ts");
static_assert(sizeof(ring_flow_record) == RING_RECORD_SIZE, "ring record must fill its slot");
static_assert(offsetof(ring_flow_record, key) == 8 && offsetof(ring_flow_record, counters) == 56 &&
                  offsetof(ring_flow_record, drop_reason) == 120,
              "ring_flow_record layout changed: update src/datapath/layout.ts");
static_assert(sizeof(drop_key) == 48, "drop_key layout changed");
static_assert(sizeof(ring_cycle_record) == RING_RECORD_SIZE && offsetof(ring_cycle_record, generation) == 8 &&
                  offsetof(ring_cycle_record, segment_closed) == 32 && offsetof(ring_flow_record, _pad2) == 124,
              "ring_cycle_record layout changed: update src/datapath/layout.ts");
static_assert(sizeof(flow_cache_slot) == 64 && offsetof(flow_cache_slot, packets) == 24 && sizeof(flow_cache) % 8 == 0,
              "flow_cache_slot layout changed (per-CPU values are read as an array of these)");
static_assert(sizeof(flow_cache_slot6) == 88 && offsetof(flow_cache_slot6, packets) == 48 &&
                  sizeof(flow_cache6) % 8 == 0,
              "flow_cache_slot6 layout changed (per-CPU values are read as an array of these)");

Datapath::Datapath(const DatapathOptions& opts, EventSink sink) : sink_(std::move(sink)), ring_(opts.ring_records) {
  auto emit = [this](DatapathEvent&& ev) { this->emit(std::move(ev)); };
  try {
    bpf_ = std::make_unique<BpfObjects>(opts.load);
    if (!opts.journal_dir.empty()) journal_ = std::make_unique<Journal>(opts.journal_dir, opts.journal_max_bytes);
    drainer_ = std::make_unique<Drainer>(*bpf_, ring_, closed_, emit, journal_.get());
    tcx_ = opts.attach_mode == AttachMode::Auto ? tcx_supported() : opts.attach_mode == AttachMode::Tcx;
    if (opts.conntrack_events) {
      ct_ = std::make_unique<ConntrackListener>(
          opts.conntrack, ring_, [this](ConntrackListener::Notice n, int err, const std::string& msg) {
            DatapathEvent ev;
            ev.kind = n == ConntrackListener::Notice::Records   ? DatapathEvent::Records
                      : n == ConntrackListener::Notice::Overrun ? DatapathEvent::ConntrackOverrun
                                                                : DatapathEvent::Error;
            ev.err = err;
            ev.message = msg;
            this->emit(std::move(ev));
          });
    }
    links_ = std::make_unique<LinkWatcher>(opts.interface_globs, static_cast<LinkTarget&>(*this));
    worker_ = std::make_unique<Worker>(opts.drain_interval_ms);
    links_->scan();  // subscribed first, so an interface created in between is not missed
    // The listener before the worker: if it cannot start, nothing runs yet that release()
    // would pull the programs from under (and no joinable thread is left behind).
    if (ct_) ct_->start();
    worker_->start(Worker::Parts{*bpf_, *links_, *drainer_, [this] { detach_all(); },
                                 [this] {
                                   if (ct_) ct_->stop();
                                 },
                                 emit, opts.journal_last_generation},
                   closed_);
  } catch (...) {
    release();
    throw;
  }
}

Datapath::~Datapath() { close(); }

uint64_t Datapath::request_drain(bool rotate) {
  // The listener reads what is queued now instead of at the end of its coalescing wait.
  // Not an ordering guarantee (the two threads push independently, as before), but the
  // drain's flip and grace period take longer than that read, so in practice a flush's
  // drain comes after the events queued when it was asked for.
  if (ct_) ct_->poke();
  return worker_->request_drain(rotate);
}

size_t Datapath::read_records(uint8_t* out, size_t max_records) { return ring_.pop(out, max_records); }

void Datapath::stop() {
  if (worker_) worker_->stop();
}

void Datapath::close() {
  if (closed_.exchange(true)) return;
  // The conntrack thread first: it may wait on a full ring that nobody reads any more,
  // and its own stop flag is what lets it give up (closed_ only frees the worker).
  if (ct_) ct_->stop();
  if (worker_) {
    worker_->wake();
    worker_->join();
  }
  release();
}

// The one cleanup path, for a failed constructor and close() alike: no thread runs now.
void Datapath::release() {
  ct_.reset();
  worker_.reset();
  detach_all();
  links_.reset();
  drainer_.reset();
  journal_.reset();
  bpf_.reset();
}

void Datapath::emit(DatapathEvent&& ev) {
  if (sink_ && !closed_.load()) sink_(std::move(ev));
}

void Datapath::attach(int ifindex, const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (attachments_.count(ifindex)) return;
  }
  const int progs[2] = {bpf_->prog_fd(false), bpf_->prog_fd(true)};
  DatapathEvent ev;
  ev.ifindex = ifindex;
  ev.ifname = name;
  ev.mode = tcx_ ? "tcx" : "clsact";
  std::unique_ptr<Attachment> a;
  try {
    a = std::make_unique<Attachment>(ifindex, name, tcx_, progs);
  } catch (const DatapathError& e) {
    // A failure on one interface is not fatal: it is reported and counted.
    ev.kind = DatapathEvent::AttachFailed;
    ev.err = e.err;
    ev.message = e.message;
    {
      std::lock_guard<std::mutex> lock(mu_);
      attach_failures_++;
    }
    emit(std::move(ev));
    return;
  }
  std::string a_unchecked = a->unchecked_leftovers();
  {
    std::lock_guard<std::mutex> lock(mu_);
    attachments_[ifindex] = std::move(a);
  }
  set_watched(ifindex, true);
  if (!a_unchecked.empty()) {
    DatapathEvent warn = ev;
    warn.kind = DatapathEvent::LeftoverUnchecked;
    warn.err = 0;
    warn.message = a_unchecked;
    emit(std::move(warn));
  }
  ev.kind = DatapathEvent::Attached;
  emit(std::move(ev));
}

void Datapath::detach(int ifindex) {
  std::unique_ptr<Attachment> a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = attachments_.find(ifindex);
    if (it == attachments_.end()) return;
    a = std::move(it->second);
    attachments_.erase(it);
  }
  set_watched(ifindex, false);
  DatapathEvent ev;
  ev.kind = DatapathEvent::Detached;
  ev.ifindex = ifindex;
  ev.ifname = a->name();
  ev.mode = a->mode();
  a.reset();  // the attachment's teardown
  emit(std::move(ev));
}

void Datapath::detach_all() {
  for (int ifindex : attached()) detach(ifindex);
}

bool Datapath::renamed(int ifindex, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = attachments_.find(ifindex);
  if (it == attachments_.end()) return false;
  if (!name.empty()) it->second->rename(name);
  return true;
}

std::vector<int> Datapath::attached() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> all;
  for (auto& [ifindex, a] : attachments_) all.push_back(ifindex);
  return all;
}

void Datapath::report(const DatapathError& e) {
  DatapathEvent ev;
  ev.kind = DatapathEvent::Error;
  ev.err = e.err;
  ev.message = e.message;
  emit(std::move(ev));
}

// With drop tracing, the drop program only counts drops on interfaces we attached to.
void Datapath::set_watched(int ifindex, bool on) {
  const drop_trace_bpf* d = bpf_->drops();
  if (!d) return;
  uint32_t k = uint32_t(ifindex);
  uint8_t one = 1;
  int fd = bpf_map__fd(d->maps.watched_ifaces);
  if (on)
    bpf_map_update_elem(fd, &k, &one, BPF_ANY);
  else
    bpf_map_delete_elem(fd, &k);
}

DatapathStats Datapath::stats() const {
  DatapathStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.attach_failures = attach_failures_;
  }
  if (!bpf_) return s;
  s.drain = drainer_->counters();
  s.drain_cycles = worker_->drain_cycles();
  s.drain_sleeps = worker_->sleeps();
  s.drain_asleep = worker_->asleep();
  read_kernel_stats(*bpf_, s);
  if (ct_) {
    s.conntrack = true;
    s.ct = ct_->stats();
  }
  return s;
}

std::vector<AttachedInterface> Datapath::interfaces() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AttachedInterface> out;
  for (auto& [ifindex, a] : attachments_) out.push_back({ifindex, a->name(), a->mode()});
  return out;
}

std::vector<int> Datapath::prog_ids() const { return bpf_ ? bpf_->prog_ids() : std::vector<int>{}; }

int Datapath::test_run(const uint8_t* packet, size_t len, bool egress) {
  if (!bpf_) throw DatapathError{"ERR_CLOSED", EBADF, "datapath is closed"};
  return bpf_->test_run(packet, len, egress);
}

}  // namespace flowlogd
