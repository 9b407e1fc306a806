// One interface's attachment of the flow programs, ingress and egress: two tcx links, or
// two clsact filters at flowlogd's fixed handle and priority. Made whole or not at all;
// one teardown (the destructor) serves a half-made attachment and a detach alike.
//
// It removes only what it made: its links and its filters, never a clsact qdisc, not
// even one it had to add (another agent, a CNI's TC datapath, may have put its own
// filters on it since, and they would go with it).
#pragma once

#include <string>

#include "common.h"

namespace flowlogd {

// Whether this kernel has tcx (Linux 6.6): a query of tcx on loopback changes nothing,
// and kernels without tcx reject the attach type.
bool tcx_supported();

class Attachment {
 public:
  // Attaches both programs (`progs`: ingress, egress) to `ifindex`, first removing
  // clsact filters a crashed flowlogd left there. Throws DatapathError (ERR_ATTACH)
  // after undoing whatever half did attach.
  Attachment(int ifindex, std::string name, bool tcx, const int progs[2]);
  ~Attachment();
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;

  int ifindex() const { return ifindex_; }
  const std::string& name() const { return name_; }
  void rename(const std::string& name) { name_ = name; }
  const char* mode() const { return tcx_ ? "tcx" : "clsact"; }
  // Filters at flowlogd's handle and priority the leftover sweep could not identify
  // (without CAP_SYS_ADMIN a program id cannot be opened), one line each; "" if none.
  const std::string& unchecked_leftovers() const { return unchecked_; }

 private:
  void attach_tcx(const int progs[2]);
  void attach_clsact(const int progs[2]);
  void teardown();
  void remove_clsact_leftovers();

  int ifindex_;
  std::string name_;
  bool tcx_;
  int link_fd_[2] = {-1, -1};        // tcx links: ingress, egress
  bool filter_[2] = {false, false};  // clsact filters: ingress, egress
  std::string unchecked_;
};

}  // namespace flowlogd
