// Capabilities. See caps.h.
#include "caps.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace flowlogd {

namespace {

const char* cap_name(int cap) {
  switch (cap) {
    case kCapNetAdmin:
      return "CAP_NET_ADMIN";
    case kCapSysAdmin:
      return "CAP_SYS_ADMIN";
    case kCapPerfmon:
      return "CAP_PERFMON";
    case kCapBpf:
      return "CAP_BPF";
  }
  return "CAP_?";
}

}  // namespace

bool has_cap(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return true;  // unknown: do not claim it is missing
  return (data[cap / 32].effective >> (cap % 32)) & 1;
}

std::string missing_caps(std::initializer_list<int> caps) {
  std::string out;
  for (int c : caps) {
    if (has_cap(c)) continue;
    if (!out.empty()) out += ", ";
    out += cap_name(c);
  }
  return out;
}

}  // namespace flowlogd
