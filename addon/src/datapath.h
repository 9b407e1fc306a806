// flowlogd datapath core: plain C++ over libbpf, no Node-API. This class puts the parts
// together; each has its own file:
//   loader.h        the BPF objects: open, size the maps, set rodata, load
//   attachment.h    one interface's tcx links or clsact filters (RAII, one teardown)
//   link_watcher.h  rtnetlink: which interfaces to attach to, as they come and go
//   drainer.h       a map generation into the record ring (cache merge, batches, widening)
//   worker.h        the thread: poll loop, generation flips, stopping
//   stats.h         counters, the kernel's and ours
//   conntrack.h     the conntrack listener (its own thread, the same ring)
//
// Lifecycle: open (load programs, attach to matching interfaces, start the worker
// thread) -> drain (the worker moves kernel map generations into the record ring) ->
// stop (detach everything, final drain) -> close (free what open created). One cleanup
// path (Datapath::release) serves both a failed open and close.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attachment.h"
#include "common.h"
#include "conntrack.h"
#include "drainer.h"
#include "event.h"
#include "journal.h"
#include "link_watcher.h"
#include "loader.h"
#include "record_ring.h"
#include "stats.h"
#include "worker.h"

namespace flowlogd {

enum class AttachMode { Auto, Tcx, Clsact };

// Every value comes from the binding: the defaults live in src/datapath/datapath.ts.
struct DatapathOptions {
  std::vector<std::string> interface_globs;
  AttachMode attach_mode;
  LoadOptions load;  // map sizes, rodata, drop tracing
  uint32_t drain_interval_ms;
  uint32_t ring_records;  // capacity of the record ring, in records
  bool conntrack_events;  // run the conntrack listener (conntrack.h)
  ConntrackOptions conntrack;
  std::string journal_dir;          // drain journal (journal.h); "" = none
  uint64_t journal_max_bytes;       // its bound on disk (journal.h); 0 = none
  int64_t journal_last_generation;  // the last complete cycle's generation there, or -1
};

struct AttachedInterface {
  int ifindex;
  std::string name;
  std::string mode;
};

class Datapath : private LinkTarget {
 public:
  using EventSink = flowlogd::EventSink;

  // Loads and attaches; throws DatapathError. `sink` is called from the worker thread.
  Datapath(const DatapathOptions& opts, EventSink sink);
  ~Datapath() override;
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // Asks the worker for a drain now; returns the cycle number that will include every
  // packet counted before this call.
  uint64_t request_drain(bool rotate = false);
  // Copies up to `max_records` ring records into `out`; returns how many.
  size_t read_records(uint8_t* out, size_t max_records);
  // Asks the worker to detach from every interface, drain both generations and end;
  // it reports Stopped when done. The ring must keep being read meanwhile.
  void stop();
  // Idempotent; frees everything open created.
  void close();

  DatapathStats stats() const;
  std::vector<AttachedInterface> interfaces() const;
  std::string attach_mode() const { return tcx_ ? "tcx" : "clsact"; }
  std::vector<int> prog_ids() const;
  // What pinning did at load (adopted, made anew and why).
  std::vector<std::string> pin_notes() const { return bpf_ ? bpf_->pin_notes() : std::vector<std::string>{}; }
  // Runs the ingress or egress program once over `packet` (BPF_PROG_TEST_RUN), for parser tests.
  int test_run(const uint8_t* packet, size_t len, bool egress);

 private:
  void release();
  void emit(DatapathEvent&& ev);
  void detach_all();
  void set_watched(int ifindex, bool on);

  // LinkTarget: the link watcher's calls.
  void attach(int ifindex, const std::string& name) override;
  void detach(int ifindex) override;
  bool renamed(int ifindex, const std::string& name) override;
  std::vector<int> attached() const override;
  void report(const DatapathError& e) override;

  EventSink sink_;
  std::atomic<bool> closed_{false};
  RecordRing ring_;
  bool tcx_ = true;
  // Freed in release(), in reverse order of creation.
  std::unique_ptr<BpfObjects> bpf_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<Drainer> drainer_;
  std::unique_ptr<ConntrackListener> ct_;
  std::unique_ptr<LinkWatcher> links_;
  std::unique_ptr<Worker> worker_;

  mutable std::mutex mu_;  // guards attachments_ and attach_failures_
  std::map<int, std::unique_ptr<Attachment>> attachments_;
  uint64_t attach_failures_ = 0;
};

}  // namespace flowlogd
