// flowlogd datapath core: plain C++ over libbpf, no Node-API.
//
// Lifecycle: open (load programs, attach to matching interfaces, start the worker
// thread) -> drain (the worker moves kernel map generations into the record ring) ->
// stop (detach everything, final drain) -> close (free what open created). One cleanup
// path (Datapath::release) serves both a failed open and close.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conntrack.h"
#include "flow_record.h"
#include "record_ring.h"

struct flow_tc_bpf;
struct drop_trace_bpf;
struct bpf_link;

namespace flowlogd {

// A failure with the operation, the errno and a stable code for JavaScript.
struct DatapathError {
  std::string code;     // e.g. "ERR_BPF_LOAD"
  int err;              // errno value (positive), 0 if none
  std::string message;  // names what failed and on what
};

enum class AttachMode { Auto, Tcx, Clsact };

struct DatapathOptions {
  std::vector<std::string> interface_globs;
  AttachMode attach_mode = AttachMode::Auto;
  uint32_t max_flows = 131072;  // entries per map generation
  uint32_t drain_interval_ms = 1000;
  uint32_t ring_records = 65536;  // capacity of the record ring, in records
  bool use_conntrack = true;      // ask conntrack for mid-stream initiators
  bool conntrack_events = false;  // run the conntrack listener (conntrack.h)
  ConntrackOptions conntrack;
  bool drop_tracing = false;        // tp_btf/kfree_skb: policy drops become deny records
  uint32_t max_drop_flows = 16384;  // entries per drop map generation
};

// What the worker tells JavaScript, in order.
struct DatapathEvent {
  enum Kind { Records, Cycle, Attached, Detached, AttachFailed, Error, Stopped, ConntrackOverrun } kind;
  uint64_t cycle = 0;  // Cycle: number of the drain that completed
  int ifindex = 0;
  std::string ifname;
  std::string mode;  // "tcx" or "clsact"
  int err = 0;
  std::string message;
};

struct AttachedInterface {
  int ifindex;
  std::string name;
  std::string mode;
};

struct DatapathStats {
  uint64_t kernel[FLOW_STAT_MAX] = {};
  uint64_t drain_cycles = 0;
  uint64_t records_drained = 0;
  uint64_t drain_ns_total = 0;  // time spent in batched map reads
  uint64_t ring_full_waits = 0;
  uint64_t cache_merged = 0;          // cache slots added to their entries before a drain
  uint64_t cache_merged_packets = 0;  // and the packets they held (counted as cache hits)
  uint64_t cache_merge_lost = 0;      // packets of slots whose entry was gone (never expected)
  uint64_t attach_failures = 0;
  bool conntrack = false;  // the listener runs
  ConntrackStats ct;
  std::vector<std::pair<uint32_t, uint64_t>> drop_reasons;  // every kernel drop, by reason
};

class Datapath {
 public:
  using EventSink = std::function<void(DatapathEvent&&)>;

  // Loads and attaches; throws DatapathError. `sink` is called from the worker thread.
  Datapath(const DatapathOptions& opts, EventSink sink);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // Asks the worker for a drain now; returns the cycle number that will include every
  // packet counted before this call.
  uint64_t request_drain();
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
  // enum skb_drop_reason of the running kernel (BTF), names without the prefix.
  static std::vector<std::pair<uint32_t, std::string>> drop_reason_names();

  // Runs the ingress or egress program once over `packet` (BPF_PROG_TEST_RUN), for parser tests.
  int test_run(const uint8_t* packet, size_t len, bool egress);

 private:
  struct Attachment;

  void release();
  void probe_attach_mode();
  void remove_clsact_leftovers(int ifindex);
  void attach(int ifindex, const std::string& name);
  void detach(int ifindex);
  bool matches(const std::string& name) const;
  void scan_interfaces();
  void resync_interfaces();
  void worker();
  void handle_rtnetlink();
  void drain_generation(int gen);
  void merge_cache(int gen);
  bool drain_map(int fd, bool ipv4);
  template <typename Fill>
  bool drain_batches(int fd, void* keys, const char* what, Fill fill);
  void drain_drops(int gen);
  void set_watched(int ifindex, bool on);
  void emit(DatapathEvent&& ev);
  void wake();

  DatapathOptions opts_;
  EventSink sink_;
  flow_tc_bpf* skel_ = nullptr;
  drop_trace_bpf* drop_skel_ = nullptr;
  bpf_link* drop_link_ = nullptr;
  std::unique_ptr<ConntrackListener> ct_;
  bool tcx_ = true;
  int rtnl_fd_ = -1;
  int wake_fd_ = -1;
  int timer_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  bool stopped_ = false;

  mutable std::mutex mu_;  // guards attachments_, stats_ counters below, drain requests
  std::condition_variable cycle_cv_;
  std::map<int, std::unique_ptr<Attachment>> attachments_;
  uint64_t requested_cycle_ = 0;
  uint64_t completed_cycle_ = 0;
  DatapathStats counters_;
  int64_t mono_to_unix_ns_ = 0;

  RecordRing ring_;
  std::vector<flow_key> batch_keys_;
  std::vector<flow_key4> batch_keys4_;
  std::vector<flow_counters> batch_values_;
  std::vector<drop_key> drop_keys_;
  std::vector<flow_cache> cache_values_;  // one per possible CPU
};

}  // namespace flowlogd
