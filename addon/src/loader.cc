// Loader. See loader.h.
#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <pthread.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "caps.h"
#include "drop_trace.skel.h"
#include "flow_tc.skel.h"

namespace flowlogd {

namespace {

// libbpf reports expected failures (probing a qdisc that is not there) as warnings;
// errors that matter come back as return codes and become DatapathError.
int quiet_libbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level != LIBBPF_WARN || std::getenv("FLOWLOGD_LIBBPF_DEBUG") == nullptr) return 0;
  return vfprintf(stderr, fmt, args);
}

// What a refused load lacks, measured (README, "Privileges"): CAP_BPF for maps and
// programs, CAP_PERFMON for the verifier to accept the programs (without it they fail
// with EACCES), CAP_NET_ADMIN for TC programs; CAP_SYS_ADMIN stands for all three.
std::string load_hint(std::initializer_list<int> needed, const char* names, const char* otherwise) {
  if (has_cap(kCapSysAdmin)) return otherwise;
  std::string missing = missing_caps(needed);
  if (missing.empty()) return otherwise;
  return std::string(" (needs ") + names + ", or CAP_SYS_ADMIN; missing " + missing + ")";
}

// Asynchronous signals held back from this thread while the verifier runs. It gives up
// with EAGAIN when the loading thread has a signal pending (kernel/bpf/verifier.c,
// do_check), and libbpf tries a load only five times: under a sampling profiler (node
// --cpu-prof sends the main thread SIGPROF every millisecond) the flow programs never
// loaded. A held signal stays pending and is delivered when the load returns.
class SignalsHeld {
 public:
  SignalsHeld() {
    sigset_t all;
    sigfillset(&all);
    // A fault raised while blocked would kill the process without its handler.
    for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) sigdelset(&all, s);
    pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~SignalsHeld() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalsHeld(const SignalsHeld&) = delete;
  SignalsHeld& operator=(const SignalsHeld&) = delete;

 private:
  sigset_t old_;
};

}  // namespace

BpfObjects::BpfObjects(const LoadOptions& opts) {
  libbpf_set_print(quiet_libbpf);
  try {
    flows_ = flow_tc_bpf__open();
    if (!flows_) throw sys_error("ERR_BPF_OPEN", errno, "opening the flow programs");
    for (bpf_map* m : {flows_->maps.flows4_0, flows_->maps.flows4_1, flows_->maps.flows6_0, flows_->maps.flows6_1}) {
      int err = bpf_map__set_max_entries(m, opts.max_flows);
      if (err) throw sys_error("ERR_BPF_LOAD", -err, "setting flow map size");
    }
    flows_->rodata->use_conntrack = opts.use_conntrack ? 1 : 0;
    if (!opts.pin_dir.empty()) {
      // Everything that holds counts not yet drained; the stats and the fragment ports start afresh.
      auto& m = flows_->maps;
      pins_ = std::make_unique<Pins>(opts.pin_dir,
                                     std::vector<PinnedMap>{{m.flows4_0, "flows4_0"},
                                                            {m.flows4_1, "flows4_1"},
                                                            {m.flows6_0, "flows6_0"},
                                                            {m.flows6_1, "flows6_1"},
                                                            {m.flow_cache, "flow_cache"},
                                                            {m.flow_cache6, "flow_cache6"},
                                                            {m.flow_overflow_0, "flow_overflow_0"},
                                                            {m.flow_overflow_1, "flow_overflow_1"}},
                                     true);
    }
    int err;
    {
      SignalsHeld held;
      err = flow_tc_bpf__load(flows_);
    }
    if (err)
      throw sys_error("ERR_BPF_LOAD", -err,
                      "loading the flow programs" + load_hint({kCapBpf, kCapPerfmon, kCapNetAdmin},
                                                              "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN",
                                                              " (needs a kernel with BTF)"));
    if (pins_) {
      pins_->pin_new();
      // The generation the adopted maps were written in, before any program runs.
      if (pins_->adopted()) flows_->bss->generation = pins_->generation();
    }
    if (!opts.drop_tracing) return;

    drops_ = drop_trace_bpf__open();
    if (!drops_) throw sys_error("ERR_DROP_TRACE", errno, "opening the drop tracing program");
    // One set of flow maps and stats for both objects.
    bpf_map__reuse_fd(drops_->maps.flows4_0, bpf_map__fd(flows_->maps.flows4_0));
    bpf_map__reuse_fd(drops_->maps.flows4_1, bpf_map__fd(flows_->maps.flows4_1));
    bpf_map__reuse_fd(drops_->maps.flows6_0, bpf_map__fd(flows_->maps.flows6_0));
    bpf_map__reuse_fd(drops_->maps.flows6_1, bpf_map__fd(flows_->maps.flows6_1));
    bpf_map__reuse_fd(drops_->maps.flow_stats, bpf_map__fd(flows_->maps.flow_stats));
    bpf_map__reuse_fd(drops_->maps.flow_overflow_0, bpf_map__fd(flows_->maps.flow_overflow_0));
    bpf_map__reuse_fd(drops_->maps.flow_overflow_1, bpf_map__fd(flows_->maps.flow_overflow_1));
    for (bpf_map* m : {drops_->maps.drops_0, drops_->maps.drops_1}) {
      err = bpf_map__set_max_entries(m, opts.max_drop_flows);
      if (err) throw sys_error("ERR_DROP_TRACE", -err, "setting drop map size");
    }
    if (!opts.pin_dir.empty())
      drop_pins_ = std::make_unique<Pins>(
          opts.pin_dir, std::vector<PinnedMap>{{drops_->maps.drops_0, "drops_0"}, {drops_->maps.drops_1, "drops_1"}},
          false);
    {
      SignalsHeld held;
      err = drop_trace_bpf__load(drops_);
    }
    if (err)
      throw sys_error("ERR_DROP_TRACE", -err,
                      "loading the drop tracing program (tp_btf/kfree_skb)" +
                          load_hint({kCapBpf, kCapPerfmon}, "CAP_BPF and CAP_PERFMON", ""));
    if (drop_pins_) drop_pins_->pin_new();
    drops_->bss->generation = flows_->bss->generation;
    drop_link_ = bpf_program__attach_trace(drops_->progs.flowlogd_drop);
    if (!drop_link_) throw sys_error("ERR_DROP_TRACE", errno, "attaching tp_btf/kfree_skb");
  } catch (...) {
    destroy();
    throw;
  }
}

BpfObjects::~BpfObjects() { destroy(); }

std::vector<std::string> BpfObjects::pin_notes() const {
  std::vector<std::string> all;
  for (const Pins* p : {pins_.get(), drop_pins_.get()})
    if (p) all.insert(all.end(), p->notes().begin(), p->notes().end());
  return all;
}

void BpfObjects::destroy() {
  if (drop_link_) {
    bpf_link__destroy(drop_link_);
    drop_link_ = nullptr;
  }
  if (drops_) {
    drop_trace_bpf__destroy(drops_);
    drops_ = nullptr;
  }
  if (flows_) {
    flow_tc_bpf__destroy(flows_);
    flows_ = nullptr;
  }
  drop_pins_.reset();
  pins_.reset();
}

int BpfObjects::prog_fd(bool egress) const {
  return bpf_program__fd(egress ? flows_->progs.flowlogd_eg : flows_->progs.flowlogd_in);
}

std::vector<int> BpfObjects::prog_ids() const {
  std::vector<int> ids;
  for (bool egress : {false, true}) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd(egress), &info, &len) == 0) ids.push_back(info.id);
  }
  return ids;
}

int BpfObjects::test_run(const uint8_t* packet, size_t len, bool egress) const {
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = packet, .data_size_in = static_cast<uint32_t>(len));
  int err = bpf_prog_test_run_opts(prog_fd(egress), &o);
  if (err) throw sys_error("ERR_TEST_RUN", errno, "running the flow program on a test packet");
  return static_cast<int>(o.retval);
}

std::vector<std::pair<uint32_t, std::string>> BpfObjects::drop_reason_names() {
  std::vector<std::pair<uint32_t, std::string>> out;
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return out;
  int id = btf__find_by_name_kind(vmlinux, "skb_drop_reason", BTF_KIND_ENUM);
  if (id > 0) {
    const btf_type* t = btf__type_by_id(vmlinux, id);
    const struct btf_enum* e = btf_enum(t);
    static const std::string prefix = "SKB_DROP_REASON_";
    for (int i = 0; i < btf_vlen(t); i++) {
      std::string name = btf__name_by_offset(vmlinux, e[i].name_off);
      if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
      out.emplace_back(uint32_t(e[i].val), name);
    }
  }
  btf__free(vmlinux);
  return out;
}

}  // namespace flowlogd
