// flowlogd datapath core. See datapath.h for the lifecycle.
#include "datapath.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fnmatch.h>
#include <linux/if_link.h>
#include <linux/membarrier.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
static_assert(sizeof(flow_cache_slot) == 64 && offsetof(flow_cache_slot, packets) == 24 && sizeof(flow_cache) % 8 == 0,
              "flow_cache_slot layout changed (per-CPU values are read as an array of these)");

namespace {

// tcx attach types (Linux 6.6); Debian's uapi headers predate them.
constexpr int kTcxIngress = 46;
constexpr int kTcxEgress = 47;
constexpr uint32_t kTcxAttachFirst = 1U << 3;  // BPF_F_BEFORE with no anchor: run first
// Our clsact filters: fixed handle and priority so a later start can find leftovers.
constexpr uint32_t kClsactHandle = 0xf10e;
constexpr uint32_t kClsactPriority = 1;
constexpr const char* kProgPrefix = "flowlogd_";
constexpr size_t kBatch = 8192;

DatapathError sys_error(const std::string& code, int err, const std::string& what) {
  return DatapathError{code, err, what + ": " + std::strerror(err)};
}

int64_t clock_ns(clockid_t clk) {
  timespec ts;
  clock_gettime(clk, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

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

struct Datapath::Attachment {
  int ifindex;
  std::string name;
  bool tcx;
  int link_fd[2] = {-1, -1};  // tcx links: ingress, egress
  bool clsact_attached[2] = {false, false};
  bool created_qdisc = false;
};

// libbpf reports expected failures (probing a qdisc that is not there) as warnings;
// errors that matter come back as return codes and become DatapathError.
static int quiet_libbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level != LIBBPF_WARN || std::getenv("FLOWLOGD_LIBBPF_DEBUG") == nullptr) return 0;
  return vfprintf(stderr, fmt, args);
}

Datapath::Datapath(const DatapathOptions& opts, EventSink sink)
    : opts_(opts), sink_(std::move(sink)), ring_(opts.ring_records) {
  libbpf_set_print(quiet_libbpf);
  batch_keys_.resize(kBatch);
  batch_keys4_.resize(kBatch);
  batch_values_.resize(kBatch);
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) throw sys_error("ERR_BPF_CPUS", -ncpus, "counting possible CPUs for per-CPU maps");
  cache_values_.resize(size_t(ncpus));
  try {
    skel_ = flow_tc_bpf__open();
    if (!skel_) throw sys_error("ERR_BPF_OPEN", errno, "opening the flow programs");
    for (bpf_map* m : {skel_->maps.flows4_0, skel_->maps.flows4_1, skel_->maps.flows6_0, skel_->maps.flows6_1}) {
      int err = bpf_map__set_max_entries(m, opts_.max_flows);
      if (err) throw sys_error("ERR_BPF_LOAD", -err, "setting flow map size");
    }
    skel_->rodata->use_conntrack = opts_.use_conntrack ? 1 : 0;
    int err = flow_tc_bpf__load(skel_);
    if (err)
      throw sys_error("ERR_BPF_LOAD", -err,
                      "loading the flow programs (needs root or CAP_BPF+CAP_NET_ADMIN, and a kernel with BTF)");

    if (opts_.drop_tracing) {
      drop_skel_ = drop_trace_bpf__open();
      if (!drop_skel_) throw sys_error("ERR_DROP_TRACE", errno, "opening the drop tracing program");
      // One set of flow maps and stats for both objects.
      bpf_map__reuse_fd(drop_skel_->maps.flows4_0, bpf_map__fd(skel_->maps.flows4_0));
      bpf_map__reuse_fd(drop_skel_->maps.flows4_1, bpf_map__fd(skel_->maps.flows4_1));
      bpf_map__reuse_fd(drop_skel_->maps.flows6_0, bpf_map__fd(skel_->maps.flows6_0));
      bpf_map__reuse_fd(drop_skel_->maps.flows6_1, bpf_map__fd(skel_->maps.flows6_1));
      bpf_map__reuse_fd(drop_skel_->maps.flow_stats, bpf_map__fd(skel_->maps.flow_stats));
      for (bpf_map* m : {drop_skel_->maps.drops_0, drop_skel_->maps.drops_1}) {
        err = bpf_map__set_max_entries(m, opts_.max_drop_flows);
        if (err) throw sys_error("ERR_DROP_TRACE", -err, "setting drop map size");
      }
      err = drop_trace_bpf__load(drop_skel_);
      if (err) throw sys_error("ERR_DROP_TRACE", -err, "loading the drop tracing program (tp_btf/kfree_skb)");
      drop_link_ = bpf_program__attach_trace(drop_skel_->progs.flowlogd_drop);
      if (!drop_link_) throw sys_error("ERR_DROP_TRACE", errno, "attaching tp_btf/kfree_skb");
      drop_keys_.resize(kBatch);
    }

    probe_attach_mode();

    if (opts_.conntrack_events) {
      ct_ = std::make_unique<ConntrackListener>(
          opts_.conntrack, ring_, [this](ConntrackListener::Notice n, int err, const std::string& msg) {
            DatapathEvent ev;
            ev.kind = n == ConntrackListener::Notice::Records   ? DatapathEvent::Records
                      : n == ConntrackListener::Notice::Overrun ? DatapathEvent::ConntrackOverrun
                                                                : DatapathEvent::Error;
            ev.err = err;
            ev.message = msg;
            emit(std::move(ev));
          });
    }

    rtnl_fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (rtnl_fd_ < 0) throw sys_error("ERR_NETLINK", errno, "opening rtnetlink");
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK;
    if (bind(rtnl_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
      throw sys_error("ERR_NETLINK", errno, "subscribing to link events");
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw sys_error("ERR_EVENTFD", errno, "creating eventfd");
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer_fd_ < 0) throw sys_error("ERR_TIMERFD", errno, "creating timerfd");
    itimerspec its{};
    its.it_interval.tv_sec = opts_.drain_interval_ms / 1000;
    its.it_interval.tv_nsec = (opts_.drain_interval_ms % 1000) * 1000000L;
    its.it_value = its.it_interval;
    timerfd_settime(timer_fd_, 0, &its, nullptr);

    // Subscribe before scanning so an interface created in between is not missed.
    scan_interfaces();
    // The listener before the worker: if it cannot start, nothing runs yet that release()
    // would pull the programs from under (and no joinable thread is left behind).
    if (ct_) ct_->start();
    thread_ = std::thread([this] { worker(); });
  } catch (...) {
    release();
    throw;
  }
}

Datapath::~Datapath() { close(); }

void Datapath::probe_attach_mode() {
  if (opts_.attach_mode != AttachMode::Auto) {
    tcx_ = opts_.attach_mode == AttachMode::Tcx;
    return;
  }
  // Querying tcx on loopback changes nothing; kernels without tcx reject the type.
  uint32_t attach_flags = 0, count = 0;
  int err = bpf_prog_query(1, static_cast<bpf_attach_type>(kTcxIngress), 0, &attach_flags, nullptr, &count);
  tcx_ = err == 0;
}

bool Datapath::matches(const std::string& name) const {
  for (const auto& g : opts_.interface_globs)
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

void Datapath::scan_interfaces() {
  struct if_nameindex* all = if_nameindex();
  if (!all) throw sys_error("ERR_INTERFACES", errno, "listing interfaces");
  std::vector<std::pair<int, std::string>> found;
  for (struct if_nameindex* i = all; i->if_index != 0; i++) found.emplace_back(i->if_index, i->if_name);
  if_freenameindex(all);
  for (auto& [ifindex, name] : found)
    if (matches(name)) attach(ifindex, name);
}

// Filters a previous, crashed flowlogd left behind (clsact filters outlive their
// loader). Only programs named flowlogd_* at our handle/priority are touched.
void Datapath::remove_clsact_leftovers(int ifindex) {
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, q, .handle = kClsactHandle, .priority = kClsactPriority);
    if (bpf_tc_query(&hook, &q) != 0) continue;
    int fd = bpf_prog_get_fd_by_id(q.prog_id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    bool ours = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
                std::strncmp(info.name, kProgPrefix, std::strlen(kProgPrefix)) == 0;
    ::close(fd);
    if (!ours) continue;
    LIBBPF_OPTS(bpf_tc_opts, d, .handle = kClsactHandle, .priority = kClsactPriority);
    bpf_tc_detach(&hook, &d);
  }
}

void Datapath::attach(int ifindex, const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (attachments_.count(ifindex)) return;
  }
  auto a = std::make_unique<Attachment>();
  a->ifindex = ifindex;
  a->name = name;
  a->tcx = tcx_;
  int progs[2] = {bpf_program__fd(skel_->progs.flowlogd_in), bpf_program__fd(skel_->progs.flowlogd_eg)};
  int err = 0;
  std::string failed;

  remove_clsact_leftovers(ifindex);
  if (tcx_) {
    int types[2] = {kTcxIngress, kTcxEgress};
    for (int i = 0; i < 2 && !err; i++) {
      LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = kTcxAttachFirst);
      int fd = bpf_link_create(progs[i], ifindex, static_cast<bpf_attach_type>(types[i]), &lo);
      if (fd < 0) {
        err = errno;
        failed = i ? "tcx egress" : "tcx ingress";
      } else {
        a->link_fd[i] = fd;
      }
    }
  } else {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int r = bpf_tc_hook_create(&hook);
    if (r == 0)
      a->created_qdisc = true;
    else if (r != -EEXIST) {
      err = -r;
      failed = "clsact qdisc";
    }
    bpf_tc_attach_point points[2] = {BPF_TC_INGRESS, BPF_TC_EGRESS};
    for (int i = 0; i < 2 && !err; i++) {
      hook.attach_point = points[i];
      LIBBPF_OPTS(bpf_tc_opts, to, .prog_fd = progs[i], .flags = 0, .handle = kClsactHandle,
                  .priority = kClsactPriority);
      r = bpf_tc_attach(&hook, &to);
      if (r) {
        err = -r;
        failed = i ? "clsact egress filter" : "clsact ingress filter";
      } else
        a->clsact_attached[i] = true;
    }
  }

  DatapathEvent ev;
  ev.ifindex = ifindex;
  ev.ifname = name;
  ev.mode = tcx_ ? "tcx" : "clsact";
  if (err) {
    // Undo the half that did attach; a failure on one interface is not fatal.
    for (int& fd : a->link_fd)
      if (fd >= 0) {
        ::close(fd);
        fd = -1;
      }
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    if (a->clsact_attached[0]) {
      LIBBPF_OPTS(bpf_tc_opts, d, .handle = kClsactHandle, .priority = kClsactPriority);
      bpf_tc_detach(&hook, &d);
    }
    if (a->created_qdisc) {
      hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      bpf_tc_hook_destroy(&hook);
    }
    ev.kind = DatapathEvent::AttachFailed;
    ev.err = err;
    ev.message = "attaching " + failed + " to " + name + ": " + std::strerror(err);
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.attach_failures++;
    }
    emit(std::move(ev));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    attachments_[ifindex] = std::move(a);
  }
  set_watched(ifindex, true);
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
  for (int& fd : a->link_fd)
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  bpf_tc_attach_point points[2] = {BPF_TC_INGRESS, BPF_TC_EGRESS};
  for (int i = 0; i < 2; i++) {
    if (!a->clsact_attached[i]) continue;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = points[i]);
    LIBBPF_OPTS(bpf_tc_opts, d, .handle = kClsactHandle, .priority = kClsactPriority);
    bpf_tc_detach(&hook, &d);  // ENODEV when the interface is gone: nothing left to do
  }
  // A clsact qdisc stays, even one we added: another agent (a CNI's TC datapath) may
  // have put its own filters on it since, and destroying the qdisc would take them along.
  DatapathEvent ev;
  ev.kind = DatapathEvent::Detached;
  ev.ifindex = ifindex;
  ev.ifname = a->name;
  ev.mode = a->tcx ? "tcx" : "clsact";
  emit(std::move(ev));
}

void Datapath::resync_interfaces() {
  try {
    scan_interfaces();
  } catch (const DatapathError& e) {
    DatapathEvent ev;
    ev.kind = DatapathEvent::Error;
    ev.err = e.err;
    ev.message = e.message;
    emit(std::move(ev));
  }
  std::vector<int> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [ifindex, a] : attachments_) {
      char name[IF_NAMESIZE] = {};
      if (!if_indextoname(ifindex, name) || !matches(name)) gone.push_back(ifindex);
    }
  }
  for (int ifindex : gone) detach(ifindex);
}

void Datapath::handle_rtnetlink() {
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = recv(rtnl_fd_, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == ENOBUFS) {
        // Missed link events: rescan, so nothing matching stays unattached and nothing
        // deleted stays attached.
        resync_interfaces();
        continue;
      }
      return;  // EAGAIN: all read
    }
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) continue;
      auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(h));
      std::string name;
      int len = IFLA_PAYLOAD(h);
      for (rtattr* at = IFLA_RTA(ifi); RTA_OK(at, len); at = RTA_NEXT(at, len))
        if (at->rta_type == IFLA_IFNAME) name = static_cast<const char*>(RTA_DATA(at));
      if (h->nlmsg_type == RTM_DELLINK) {
        detach(ifi->ifi_index);
        continue;
      }
      bool attached;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = attachments_.find(ifi->ifi_index);
        attached = it != attachments_.end();
        if (attached && !name.empty()) it->second->name = name;  // renamed
      }
      if (!attached && matches(name))
        attach(ifi->ifi_index, name);
      else if (attached && !matches(name))
        detach(ifi->ifi_index);
    }
  }
}

// The IPv4 map's compact key, widened to the ring's flow_key (IPv4-mapped addresses).
static void widen(const flow_key4& k4, flow_key& k) {
  k = flow_key{};
  k.ifindex = k4.ifindex;
  k.addr_a[10] = k.addr_a[11] = 0xff;
  k.addr_b[10] = k.addr_b[11] = 0xff;
  std::memcpy(&k.addr_a[12], &k4.addr_a, 4);
  std::memcpy(&k.addr_b[12], &k4.addr_b, 4);
  k.port_a = k4.port_a;
  k.port_b = k4.port_b;
  k.proto = k4.proto;
  k.family = 4;
}

void Datapath::drain_generation(int gen) {
  mono_to_unix_ns_ = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
  merge_cache(gen);
  if (!drain_map(bpf_map__fd(gen ? skel_->maps.flows4_1 : skel_->maps.flows4_0), true)) return;
  drain_map(bpf_map__fd(gen ? skel_->maps.flows6_1 : skel_->maps.flows6_0), false);
}

// Adds what the programs' per-CPU cache holds for this generation to the entries it
// belongs to, then empties it (the programs write there again after the next flip).
void Datapath::merge_cache(int gen) {
  int cache_fd = bpf_map__fd(skel_->maps.flow_cache);
  int flows_fd = bpf_map__fd(gen ? skel_->maps.flows4_1 : skel_->maps.flows4_0);
  uint32_t idx = uint32_t(gen);
  auto fail = [this](const char* what) {
    DatapathEvent ev;
    ev.kind = DatapathEvent::Error;
    ev.err = errno;
    ev.message = std::string(what) + ": " + std::strerror(errno);
    emit(std::move(ev));
  };
  bool read = bpf_map_lookup_elem(cache_fd, &idx, cache_values_.data()) == 0;
  if (!read) fail("reading the flow cache (its counts for this drain are lost)");
  uint64_t merged = 0, merged_packets = 0, lost = 0;
  for (const flow_cache& cpu : cache_values_) {
    if (!read) break;
    for (const flow_cache_slot& s : cpu.slot) {
      if (s.key.ifindex == 0 || (s.packets[0] | s.packets[1]) == 0) continue;
      flow_counters c;
      if (bpf_map_lookup_elem(flows_fd, &s.key, &c) != 0) {
        lost += s.packets[0] + s.packets[1];
        continue;
      }
      for (int d = 0; d < 2; d++) {
        c.packets[d] += s.packets[d];
        c.bytes[d] += s.bytes[d];
      }
      c.last_seen_ns = std::max(c.last_seen_ns, s.last_seen_ns);
      c.tcp_flags |= s.tcp_flags;
      if (bpf_map_update_elem(flows_fd, &s.key, &c, BPF_EXIST) != 0)
        lost += s.packets[0] + s.packets[1];
      else {
        merged++;
        merged_packets += s.packets[0] + s.packets[1];
      }
    }
  }
  // Emptied whatever happened above: a slot left holding a key would take that
  // connection's packets two flips from now without its map entry existing.
  std::memset(cache_values_.data(), 0, cache_values_.size() * sizeof(flow_cache));
  if (bpf_map_update_elem(cache_fd, &idx, cache_values_.data(), BPF_ANY) != 0 &&
      bpf_map_update_elem(cache_fd, &idx, cache_values_.data(), BPF_ANY) != 0)
    fail("emptying the flow cache");
  std::lock_guard<std::mutex> lock(mu_);
  counters_.cache_merged += merged;
  counters_.cache_merged_packets += merged_packets;
  counters_.cache_merge_lost += lost;
}

// Moves one map's entries into the ring; false when closing without a reader.
bool Datapath::drain_map(int fd, bool ipv4) {
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
bool Datapath::drain_batches(int fd, void* keys, const char* what, Fill fill) {
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
    emit(DatapathEvent{DatapathEvent::Records});
  };
  for (;;) {
    uint32_t count = kBatch;
    uint32_t in_token = out_token;
    int err = bpf_map_lookup_and_delete_batch(fd, first ? nullptr : &in_token, &out_token, keys, batch_values_.data(),
                                              &count, nullptr);
    int e = err ? errno : 0;
    first = false;
    if (err && e != ENOENT) {
      DatapathEvent ev;
      ev.kind = DatapathEvent::Error;
      ev.err = e;
      ev.message = std::string("draining ") + what + ": " + std::strerror(e);
      emit(std::move(ev));
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
    if (count) emit(DatapathEvent{DatapathEvent::Records});
    if (e == ENOENT) break;
    t0 = clock_ns(CLOCK_MONOTONIC);
  }
  std::lock_guard<std::mutex> lock(mu_);
  counters_.records_drained += drained;
  return true;
}

void Datapath::set_watched(int ifindex, bool on) {
  if (!drop_skel_) return;
  uint32_t k = uint32_t(ifindex);
  uint8_t one = 1;
  int fd = bpf_map__fd(drop_skel_->maps.watched_ifaces);
  if (on)
    bpf_map_update_elem(fd, &k, &one, BPF_ANY);
  else
    bpf_map_delete_elem(fd, &k);
}

// Policy drops of this generation, as flow records with their drop reason.
void Datapath::drain_drops(int gen) {
  if (!drop_skel_) return;
  int fd = bpf_map__fd(gen ? drop_skel_->maps.drops_1 : drop_skel_->maps.drops_0);
  drain_batches(fd, drop_keys_.data(), "drop map", [&](uint32_t i, ring_flow_record& rec) {
    rec.key = drop_keys_[i].flow;
    rec.drop_reason = drop_keys_[i].reason;
  });
}

void Datapath::worker() {
  pollfd fds[3] = {{rtnl_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}, {timer_fd_, POLLIN, 0}};
  uint32_t gen = 0;
  for (;;) {
    if (poll(fds, 3, -1) < 0 && errno != EINTR) {
      DatapathEvent ev;
      ev.kind = DatapathEvent::Error;
      ev.err = errno;
      ev.message = std::string("datapath worker: poll: ") + std::strerror(errno);
      emit(std::move(ev));
      emit(DatapathEvent{DatapathEvent::Stopped});  // nothing will drain any more: release waiters
      return;
    }
    if (closed_.load()) return;
    if (fds[0].revents & POLLIN) handle_rtnetlink();
    uint64_t v;
    bool timer = (fds[2].revents & POLLIN) && read(timer_fd_, &v, sizeof(v)) > 0;
    if (fds[1].revents & POLLIN) read(wake_fd_, &v, sizeof(v));

    bool stopping = stopping_.load();
    uint64_t target;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (timer && requested_cycle_ <= completed_cycle_) requested_cycle_ = completed_cycle_ + 1;
      target = requested_cycle_;
      if (target <= completed_cycle_ && !stopping) continue;
    }
    if (stopping) {
      // Detach first so nothing counts behind the final drain.
      std::vector<int> all;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [ifindex, a] : attachments_) all.push_back(ifindex);
      }
      for (int ifindex : all) detach(ifindex);
    }
    __atomic_store_n(&skel_->bss->generation, gen + 1, __ATOMIC_SEQ_CST);
    if (drop_skel_) {
      // A packet is counted by TC and dropped microseconds later. Flipping the drop
      // program a grace period after TC puts the drop of every packet TC counted in the
      // old generation in the old generation too, so a blocked packet never shows as
      // allowed at a flush; at worst a drop lands one drain before its TC count, and the
      // aggregator's debt absorbs that.
      wait_for_running_programs();
      __atomic_store_n(&drop_skel_->bss->generation, gen + 1, __ATOMIC_SEQ_CST);
    }
    wait_for_running_programs();  // tracing programs run under RCU too
    drain_generation(gen & 1);
    drain_drops(gen & 1);  // after the flows: JavaScript moves these from allow to deny
    gen++;
    if (stopping) {
      drain_generation(gen & 1);  // nothing writes to either one now
      drain_drops(gen & 1);
      if (ct_) ct_->stop();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      completed_cycle_ = std::max(completed_cycle_, target);
      counters_.drain_cycles++;
    }
    DatapathEvent ev;
    ev.kind = DatapathEvent::Cycle;
    ev.cycle = target;
    emit(std::move(ev));
    if (stopping) {
      DatapathEvent done;
      done.kind = DatapathEvent::Stopped;
      emit(std::move(done));
      return;
    }
  }
}

uint64_t Datapath::request_drain() {
  uint64_t target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A drain already running may have flipped before the caller's last packets:
    // ask for the one after it.
    requested_cycle_ = std::max(requested_cycle_, completed_cycle_) + 1;
    target = requested_cycle_;
  }
  wake();
  return target;
}

void Datapath::wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) write(wake_fd_, &one, sizeof(one));
}

size_t Datapath::read_records(uint8_t* out, size_t max_records) { return ring_.pop(out, max_records); }

void Datapath::stop() {
  if (stopped_ || !thread_.joinable()) return;
  stopped_ = true;
  stopping_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    requested_cycle_ = std::max(requested_cycle_, completed_cycle_ + 1);
  }
  wake();
}

void Datapath::close() {
  if (closed_.exchange(true)) return;
  // The conntrack thread first: it may wait on a full ring that nobody reads any more,
  // and its own stop flag is what lets it give up (closed_ only frees the worker).
  if (ct_) ct_->stop();
  wake();
  if (thread_.joinable()) thread_.join();
  release();
}

void Datapath::release() {
  ct_.reset();
  if (drop_link_) {
    bpf_link__destroy(drop_link_);
    drop_link_ = nullptr;
  }
  std::vector<int> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [ifindex, a] : attachments_) all.push_back(ifindex);
  }
  for (int ifindex : all) detach(ifindex);
  for (int* fd : {&rtnl_fd_, &wake_fd_, &timer_fd_})
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  if (drop_skel_) {
    drop_trace_bpf__destroy(drop_skel_);
    drop_skel_ = nullptr;
  }
  if (skel_) {
    flow_tc_bpf__destroy(skel_);
    skel_ = nullptr;
  }
}

void Datapath::emit(DatapathEvent&& ev) {
  if (sink_ && !closed_.load()) sink_(std::move(ev));
}

DatapathStats Datapath::stats() const {
  DatapathStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = counters_;
  }
  if (!skel_) return s;
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(ncpu > 0 ? ncpu : 1);
  int fd = bpf_map__fd(skel_->maps.flow_stats);
  for (uint32_t i = 0; i < FLOW_STAT_MAX; i++) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    s.kernel[i] = sum;
  }
  // The programs count cache hits when a slot is evicted; the slots merged here are the rest.
  s.kernel[FLOW_STAT_CACHE_HITS] += s.cache_merged_packets;
  if (ct_) {
    s.conntrack = true;
    s.ct = ct_->stats();
  }
  if (drop_skel_) {
    int rfd = bpf_map__fd(drop_skel_->maps.drop_reasons);
    for (uint32_t i = 0; i < 256; i++) {
      if (bpf_map_lookup_elem(rfd, &i, per_cpu.data()) != 0) continue;
      uint64_t sum = 0;
      for (uint64_t v : per_cpu) sum += v;
      if (sum) s.drop_reasons.emplace_back(i, sum);
    }
  }
  return s;
}

std::vector<std::pair<uint32_t, std::string>> Datapath::drop_reason_names() {
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

std::vector<AttachedInterface> Datapath::interfaces() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AttachedInterface> out;
  for (auto& [ifindex, a] : attachments_) out.push_back({ifindex, a->name, a->tcx ? "tcx" : "clsact"});
  return out;
}

std::vector<int> Datapath::prog_ids() const {
  std::vector<int> ids;
  if (!skel_) return ids;
  for (bpf_program* p : {skel_->progs.flowlogd_in, skel_->progs.flowlogd_eg}) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) == 0) ids.push_back(info.id);
  }
  return ids;
}

int Datapath::test_run(const uint8_t* packet, size_t len, bool egress) {
  if (!skel_) throw DatapathError{"ERR_CLOSED", EBADF, "datapath is closed"};
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = packet, .data_size_in = static_cast<uint32_t>(len));
  int fd = bpf_program__fd(egress ? skel_->progs.flowlogd_eg : skel_->progs.flowlogd_in);
  int err = bpf_prog_test_run_opts(fd, &o);
  if (err) throw sys_error("ERR_TEST_RUN", errno, "running the flow program on a test packet");
  return static_cast<int>(o.retval);
}

}  // namespace flowlogd
