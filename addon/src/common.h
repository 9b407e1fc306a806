// What the datapath and the conntrack listener share: the error they throw, the clock
// they read, and the one form an IPv4 address takes in a ring record.
#pragma once

#include <time.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace flowlogd {

// A failure with the operation, the errno and a stable code for JavaScript.
struct DatapathError {
  std::string code;     // e.g. "ERR_BPF_LOAD"
  int err;              // errno value (positive), 0 if none
  std::string message;  // names what failed and on what
};

// `what` failed with errno `err`: the message names both.
inline DatapathError sys_error(const std::string& code, int err, const std::string& what) {
  return DatapathError{code, err, what + ": " + std::strerror(err)};
}

inline int64_t clock_ns(clockid_t clk) {
  timespec ts;
  clock_gettime(clk, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// An IPv4 address (network order) as the IPv4-mapped IPv6 address ::ffff:a.b.c.d, the
// form every ring record carries so TypeScript reads one address layout.
inline void mapped4(uint8_t out[16], uint32_t addr_be) {
  std::memset(out, 0, 10);
  out[10] = out[11] = 0xff;
  std::memcpy(out + 12, &addr_be, 4);
}

}  // namespace flowlogd
