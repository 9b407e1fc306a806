// Attachment. See attachment.h.
#include "attachment.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace flowlogd {

namespace {

// tcx attach types (Linux 6.6); Debian's uapi headers predate them.
constexpr int kTcxIngress = 46;
constexpr int kTcxEgress = 47;
constexpr uint32_t kTcxAttachFirst = 1U << 3;  // BPF_F_BEFORE with no anchor: run first
// Our clsact filters: fixed handle and priority so a later start can find leftovers.
constexpr uint32_t kClsactHandle = 0xf10e;
constexpr uint32_t kClsactPriority = 1;
constexpr const char* kProgPrefix = "flowlogd_";
constexpr bpf_tc_attach_point kPoints[2] = {BPF_TC_INGRESS, BPF_TC_EGRESS};

}  // namespace

// Filters a previous, crashed flowlogd left behind (clsact filters outlive their
// loader). Only programs named flowlogd_* at our handle/priority are touched; one that
// cannot be identified is left as it is and named in unchecked_.
void Attachment::remove_clsact_leftovers() {
  for (auto point : kPoints) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex_, .attach_point = point);
    LIBBPF_OPTS(bpf_tc_opts, q, .handle = kClsactHandle, .priority = kClsactPriority);
    if (bpf_tc_query(&hook, &q) != 0) continue;
    int fd = bpf_prog_get_fd_by_id(q.prog_id);
    if (fd < 0) {
      int e = errno;
      const char* where = point == BPF_TC_INGRESS ? "ingress" : "egress";
      if (!unchecked_.empty()) unchecked_ += "; ";
      unchecked_ += name_ + ": the clsact " + where + " filter at flowlogd's handle 0xf10e, priority 1 (program id " +
                    std::to_string(q.prog_id) +
                    ") could not be checked for a crashed run's leftover: " + "opening a program by id " +
                    (e == EPERM ? "needs CAP_SYS_ADMIN" : std::string("failed: ") + std::strerror(e)) +
                    "; if it is flowlogd's it stays attached (remove it with: tc filter del dev " + name_ + " " +
                    where + " pref 1 handle 0xf10e bpf)";
      continue;
    }
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

bool tcx_supported() {
  uint32_t attach_flags = 0, count = 0;
  return bpf_prog_query(1, static_cast<bpf_attach_type>(kTcxIngress), 0, &attach_flags, nullptr, &count) == 0;
}

Attachment::Attachment(int ifindex, std::string name, bool tcx, const int progs[2])
    : ifindex_(ifindex), name_(std::move(name)), tcx_(tcx) {
  remove_clsact_leftovers();
  try {
    if (tcx_)
      attach_tcx(progs);
    else
      attach_clsact(progs);
  } catch (...) {
    teardown();  // a failure on one interface is not fatal: leave it as it was
    throw;
  }
}

Attachment::~Attachment() { teardown(); }

void Attachment::attach_tcx(const int progs[2]) {
  const int types[2] = {kTcxIngress, kTcxEgress};
  for (int i = 0; i < 2; i++) {
    LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = kTcxAttachFirst);
    int fd = bpf_link_create(progs[i], ifindex_, static_cast<bpf_attach_type>(types[i]), &lo);
    if (fd < 0)
      throw sys_error("ERR_ATTACH", errno,
                      std::string("attaching ") + (i ? "tcx egress" : "tcx ingress") + " to " + name_);
    link_fd_[i] = fd;
  }
}

void Attachment::attach_clsact(const int progs[2]) {
  // The qdisc may exist already (another agent's, or ours from before): either is fine.
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex_, .attach_point = BPF_TC_INGRESS);
  int r = bpf_tc_hook_create(&hook);
  if (r != 0 && r != -EEXIST) throw sys_error("ERR_ATTACH", -r, "attaching clsact qdisc to " + name_);
  for (int i = 0; i < 2; i++) {
    hook.attach_point = kPoints[i];
    LIBBPF_OPTS(bpf_tc_opts, to, .prog_fd = progs[i], .flags = 0, .handle = kClsactHandle, .priority = kClsactPriority);
    r = bpf_tc_attach(&hook, &to);
    if (r)
      throw sys_error(
          "ERR_ATTACH", -r,
          std::string("attaching ") + (i ? "clsact egress filter" : "clsact ingress filter") + " to " + name_);
    filter_[i] = true;
  }
}

void Attachment::teardown() {
  for (int& fd : link_fd_)
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  for (int i = 0; i < 2; i++) {
    if (!filter_[i]) continue;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex_, .attach_point = kPoints[i]);
    LIBBPF_OPTS(bpf_tc_opts, d, .handle = kClsactHandle, .priority = kClsactPriority);
    bpf_tc_detach(&hook, &d);  // ENODEV when the interface is gone: nothing left to do
    filter_[i] = false;
  }
  // The clsact qdisc stays (see attachment.h).
}

}  // namespace flowlogd
