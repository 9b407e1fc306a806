// What the datapath's threads tell JavaScript, in order (binding.cc delivers them).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

namespace flowlogd {

struct DatapathEvent {
  enum Kind {
    Records,
    Cycle,
    Attached,
    Detached,
    AttachFailed,
    Error,
    Stopped,
    ConntrackOverrun,
    LeftoverUnchecked,  // message: Attachment::unchecked_leftovers()
    JournalFull,        // message: the journal reached its bound (journal.h)
  } kind;
  uint64_t cycle = 0;  // Cycle: number of the drain that completed
  int ifindex = 0;
  std::string ifname;
  std::string mode;  // "tcx" or "clsact"
  int err = 0;
  std::string message;
};

// Called from the datapath's own threads.
using EventSink = std::function<void(DatapathEvent&&)>;

// An Error event: `what` failed with errno `err` (the message names both).
inline DatapathEvent error_event(int err, const std::string& what) {
  DatapathEvent ev{DatapathEvent::Error};
  ev.err = err;
  ev.message = what + ": " + std::strerror(err);
  return ev;
}

}  // namespace flowlogd
