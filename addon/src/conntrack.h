// Conntrack listener: NEW and DESTROY events from ctnetlink in one network namespace,
// turned into fixed-layout ring records (ring_conntrack_record). Plain C++, no Node-API.
//
// It starts with a dump so connections that existed before are known. The event socket
// has a large receive buffer (SO_RCVBUFFORCE); when the kernel still overruns it
// (ENOBUFS) the listener counts the overrun, reads what is queued, dumps again and
// reconciles: entries in the dump it did not know are reported (CT_EVENT_DUMP), entries
// it knew that are gone get a synthetic DESTROY. So no connection's start or end is lost.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common.h"
#include "flow_record.h"
#include "record_ring.h"

struct nlmsghdr;

namespace flowlogd {

// Every value comes from the binding (defaults live in src/datapath/datapath.ts).
struct ConntrackOptions {
  // "" for the caller's netns; a name under /run/netns, or a path (/proc/PID/ns/net).
  std::string netns;
  uint32_t rcvbuf_bytes;  // asked for with SO_RCVBUFFORCE
  // Periodic re-dump (0: only after an overrun). A dump also makes the kernel reap
  // expired entries, which sends their DESTROY events sooner than garbage collection.
  uint32_t resync_interval_ms;
};

struct ConntrackStats {
  uint64_t events_new = 0;
  uint64_t events_destroy = 0;
  uint64_t dumped = 0;  // entries read from dumps
  uint64_t overruns = 0;
  uint64_t resyncs = 0;
  uint64_t synthetic_destroys = 0;
  uint64_t parse_errors = 0;
  uint64_t known = 0;         // live entries the listener knows now
  uint32_t rcvbuf_bytes = 0;  // what the kernel granted (doubled, as SO_RCVBUF reports it)
  uint64_t busy_ns = 0;       // time spent reading and converting (not waiting)
  uint64_t reads = 0;         // wake-ups that pushed records: events, or a resync's dump (each one JavaScript's too)
};

class ConntrackListener {
 public:
  enum class Notice { Records, Overrun, Error };
  using Notify = std::function<void(Notice, int err, const std::string& message)>;

  // Opens the sockets (in opts.netns) and subscribes; throws DatapathError.
  // start() runs the initial dump and the event loop on the listener's own thread.
  ConntrackListener(const ConntrackOptions& opts, RecordRing& ring, Notify notify);
  ~ConntrackListener();
  ConntrackListener(const ConntrackListener&) = delete;
  ConntrackListener& operator=(const ConntrackListener&) = delete;

  void start();
  // Ends the thread (idempotent); a push waiting on a full ring is abandoned.
  void stop();
  // Reads what is queued now instead of at the end of the coalescing wait (a flush's
  // drain is about to be taken: its connections' events should be in before it).
  void poke();
  ConntrackStats stats() const;

 private:
  struct Known {
    ct_tuple orig, reply;
    uint8_t proto, family;
    uint64_t learned;  // dump_gen_ when learned: a dump can only vouch for older entries
  };
  enum class Source { Event, Dump };

  void run();
  bool read_events();  // false when stopping
  bool dump();         // a full dump + reconcile; false when stopping
  bool handle(const nlmsghdr* h, Source src);
  bool push(const ring_conntrack_record& rec);
  void coalesce();  // the wait after a read that found events
  void consume_wake();

  ConntrackOptions opts_;
  RecordRing& ring_;
  Notify notify_;
  int ev_fd_ = -1;    // subscribed to NEW and DESTROY
  int dump_fd_ = -1;  // requests
  int wake_fd_ = -1;  // stop() and poke()
  int timer_fd_ = -1;
  uint32_t seq_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool in_dump_ = false;          // reading the events queued during a dump
  bool resync_again_ = false;     // an overrun happened meanwhile
  bool lost_since_dump_ = false;  // events lost (ENOBUFS) since the last complete dump
  uint64_t dump_gen_ = 0;         // number of the last dump requested (Known::learned compares with it)
  std::unordered_map<uint32_t, Known> known_;
  std::unordered_set<uint32_t> seen_;  // ids in the dump being read
  mutable std::mutex mu_;              // guards stats_
  ConntrackStats stats_;
  bool pushed_ = false;    // records pushed since the last notify
  bool overran_ = false;   // this wake-up's reads met ENOBUFS: no coalescing wait after it
  bool coalesce_ = false;  // the receive buffer granted is big enough to wait (kCoalesceMinRcvbuf)
};

}  // namespace flowlogd
