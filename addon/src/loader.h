// Loader: opens the flow programs (and the drop tracer, if asked), sizes their maps, sets
// their read-only settings, loads them into the kernel. The BPF objects live as long as
// this; the destructor frees them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "pins.h"

struct flow_tc_bpf;
struct drop_trace_bpf;
struct bpf_link;

namespace flowlogd {

// Every value comes from the binding (defaults live in src/datapath/datapath.ts).
struct LoadOptions {
  uint32_t max_flows;       // entries per flow map generation
  bool use_conntrack;       // rodata: ask conntrack for mid-stream initiators
  bool drop_tracing;        // load tp_btf/kfree_skb: policy drops become deny records
  uint32_t max_drop_flows;  // entries per drop map generation
  std::string pin_dir;      // bpffs directory to adopt and pin the maps in; "" = none (pins.h)
};

class BpfObjects {
 public:
  // Throws DatapathError; whatever was opened before the failure is freed.
  explicit BpfObjects(const LoadOptions& opts);
  ~BpfObjects();
  BpfObjects(const BpfObjects&) = delete;
  BpfObjects& operator=(const BpfObjects&) = delete;

  flow_tc_bpf* flows() const { return flows_; }
  drop_trace_bpf* drops() const { return drops_; }  // nullptr without drop tracing
  Pins* pins() const { return pins_.get(); }        // nullptr without a pin directory
  // What pinning did (adopted, made anew and why), for the log.
  std::vector<std::string> pin_notes() const;
  int prog_fd(bool egress) const;
  std::vector<int> prog_ids() const;
  // Runs the ingress or egress program once over `packet` (BPF_PROG_TEST_RUN), for parser tests.
  int test_run(const uint8_t* packet, size_t len, bool egress) const;
  // enum skb_drop_reason of the running kernel (BTF), names without the prefix.
  static std::vector<std::pair<uint32_t, std::string>> drop_reason_names();

 private:
  void destroy();

  flow_tc_bpf* flows_ = nullptr;
  drop_trace_bpf* drops_ = nullptr;
  bpf_link* drop_link_ = nullptr;
  std::unique_ptr<Pins> pins_;
  std::unique_ptr<Pins> drop_pins_;
};

}  // namespace flowlogd
