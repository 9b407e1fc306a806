// Which of the capabilities an operation needs this process lacks, for error messages
// that name them (README, "Privileges": measured, not guessed).
#pragma once

#include <initializer_list>
#include <string>

namespace flowlogd {

// Capability numbers (linux/capability.h; CAP_BPF and CAP_PERFMON are Linux 5.8).
constexpr int kCapNetAdmin = 12;
constexpr int kCapSysAdmin = 21;
constexpr int kCapPerfmon = 38;
constexpr int kCapBpf = 39;

// Whether the calling thread's effective set has `cap`.
bool has_cap(int cap);

// "CAP_BPF, CAP_PERFMON" for those of `caps` missing from the effective set; "" if none.
std::string missing_caps(std::initializer_list<int> caps);

}  // namespace flowlogd
