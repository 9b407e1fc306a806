// Conntrack listener. See conntrack.h.
#include "conntrack.h"

#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flowlogd {

static_assert(sizeof(ct_tuple) == 36, "ct_tuple layout changed: update src/datapath/layout.ts");
static_assert(sizeof(ring_conntrack_record) == RING_RECORD_SIZE, "conntrack record must fill its slot");
static_assert(offsetof(ring_conntrack_record, orig) == 16 && offsetof(ring_conntrack_record, reply) == 52 &&
                  offsetof(ring_conntrack_record, packets) == 88 && offsetof(ring_conntrack_record, time_ns) == 120,
              "ring_conntrack_record layout changed: update src/datapath/layout.ts");

namespace {

// A dump's recv() returns many entries; on the event socket (multicast) each event is a
// datagram, one a recv() (8.8k recvfrom a second for 8.8k events; recvmmsg() batches of
// 64 measured no cheaper: BENCHMARKS.md, issue 12).
constexpr size_t kRecvBuf = 1 << 20;
// After a read that found events the thread waits this long (unless poked or stopped)
// before it polls again, so events queue in the socket and one wake-up of this thread,
// and one of JavaScript's, takes them all. Read as they came, 10k new connections a
// second were ~20k wake-ups of each: half a core in context switches (BENCHMARKS.md,
// bench lab tcp-rr). Only with a receive buffer of kCoalesceMinRcvbuf or more (the
// default asks 64 MiB; granted less, as without CAP_NET_ADMIN in a user namespace, 5 ms
// at 100k events a second could overrun it), and not right after an overrun.
constexpr int kCoalesceMs = 5;
constexpr uint32_t kCoalesceMinRcvbuf = 8u << 20;

DatapathError ct_error(int err, const std::string& what) { return sys_error("ERR_CONNTRACK", err, what); }

// Fills one direction's addresses and ports from a parsed entry.
void tuple_of(const nf_conntrack* ct, bool reply, uint8_t family, uint8_t proto, ct_tuple* t) {
  if (family == 4) {
    mapped4(t->src, nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_SRC : ATTR_ORIG_IPV4_SRC));
    mapped4(t->dst, nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_DST : ATTR_ORIG_IPV4_DST));
  } else {
    const void* s = nfct_get_attr(ct, reply ? ATTR_REPL_IPV6_SRC : ATTR_ORIG_IPV6_SRC);
    const void* d = nfct_get_attr(ct, reply ? ATTR_REPL_IPV6_DST : ATTR_ORIG_IPV6_DST);
    if (s) std::memcpy(t->src, s, 16);
    if (d) std::memcpy(t->dst, d, 16);
  }
  if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
    // Echo: the identifier in both ports; else (type << 8 | code), as the TC key does.
    uint8_t type = nfct_get_attr_u8(ct, ATTR_ICMP_TYPE);
    uint8_t code = nfct_get_attr_u8(ct, ATTR_ICMP_CODE);
    bool echo = proto == IPPROTO_ICMP ? (type == 8 || type == 0) : (type == 128 || type == 129);
    uint16_t v = echo ? ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID)) : uint16_t(type << 8 | code);
    t->sport = t->dport = v;
    return;
  }
  if (nfct_attr_is_set(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC) > 0) {
    t->sport = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
    t->dport = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));
  }
}

// Opens a ctnetlink socket in the current thread's netns.
int open_socket(bool subscribe, uint32_t rcvbuf, bool nonblock) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), NETLINK_NETFILTER);
  if (fd < 0) return -errno;
  if (rcvbuf) {
    int v = int(rcvbuf);
    // FORCE passes rmem_max (needs CAP_NET_ADMIN); plain SO_RCVBUF is capped by it.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  }
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (subscribe) sa.nl_groups = (1u << (NFNLGRP_CONNTRACK_NEW - 1)) | (1u << (NFNLGRP_CONNTRACK_DESTROY - 1));
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  return fd;
}

}  // namespace

ConntrackListener::ConntrackListener(const ConntrackOptions& opts, RecordRing& ring, Notify notify)
    : opts_(opts), ring_(ring), notify_(std::move(notify)) {
  // Sockets belong to the netns they are created in: create them on a short-lived thread
  // that entered the wanted netns (setns changes only the calling thread).
  int err = 0;
  std::string what;
  std::thread opener([&] {
    if (!opts_.netns.empty()) {
      std::string path = opts_.netns[0] == '/' ? opts_.netns : "/run/netns/" + opts_.netns;
      int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0) {
        err = errno;
        what = "opening network namespace " + path;
        return;
      }
      if (setns(nsfd, CLONE_NEWNET) != 0) {
        err = errno;
        what = "entering network namespace " + path + (err == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
        ::close(nsfd);
        return;
      }
      ::close(nsfd);
    }
    int fd = open_socket(true, opts_.rcvbuf_bytes, true);
    if (fd < 0) {
      err = -fd;
      what = "subscribing to conntrack events (needs CAP_NET_ADMIN and nf_conntrack)";
      return;
    }
    ev_fd_ = fd;
    fd = open_socket(false, 4u << 20, false);
    if (fd < 0) {
      err = -fd;
      what = "opening the conntrack dump socket";
      return;
    }
    dump_fd_ = fd;
  });
  opener.join();
  try {
    if (err) throw ct_error(err, what);
    int granted = 0;
    socklen_t len = sizeof(granted);
    getsockopt(ev_fd_, SOL_SOCKET, SO_RCVBUF, &granted, &len);
    stats_.rcvbuf_bytes = uint32_t(granted);
    coalesce_ = uint32_t(granted) >= kCoalesceMinRcvbuf;
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw ct_error(errno, "creating eventfd");
    if (opts_.resync_interval_ms) {
      timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
      if (timer_fd_ < 0) throw ct_error(errno, "creating timerfd");
      itimerspec its{};
      its.it_interval.tv_sec = opts_.resync_interval_ms / 1000;
      its.it_interval.tv_nsec = (opts_.resync_interval_ms % 1000) * 1000000L;
      its.it_value = its.it_interval;
      timerfd_settime(timer_fd_, 0, &its, nullptr);
    }
  } catch (...) {
    for (int* fd : {&ev_fd_, &dump_fd_, &wake_fd_, &timer_fd_})
      if (*fd >= 0) ::close(*fd);
    throw;
  }
}

ConntrackListener::~ConntrackListener() {
  stop();
  for (int* fd : {&ev_fd_, &dump_fd_, &wake_fd_, &timer_fd_})
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
}

void ConntrackListener::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void ConntrackListener::stop() {
  stop_.store(true);
  uint64_t one = 1;
  if (wake_fd_ >= 0) write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void ConntrackListener::poke() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) write(wake_fd_, &one, sizeof(one));
}

void ConntrackListener::consume_wake() {
  uint64_t v;
  while (read(wake_fd_, &v, sizeof(v)) > 0) {}
}

void ConntrackListener::coalesce() {
  pollfd w{wake_fd_, POLLIN, 0};
  if (poll(&w, 1, kCoalesceMs) > 0) consume_wake();
}

ConntrackStats ConntrackListener::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool ConntrackListener::push(const ring_conntrack_record& rec) {
  pushed_ = true;
  return ring_.push(&rec, stop_, [this] { notify_(Notice::Records, 0, ""); });
}

bool ConntrackListener::handle(const nlmsghdr* h, Source src) {
  if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK) return true;
  uint8_t type = h->nlmsg_type & 0xff;
  if (type != IPCTNL_MSG_CT_NEW && type != IPCTNL_MSG_CT_DELETE) return true;
  nf_conntrack* ct = nfct_new();
  if (!ct) return true;
  ring_conntrack_record rec{};
  bool ok = nfct_nlmsg_parse(h, ct) == 0;
  uint8_t l3 = ok ? nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) : 0;
  if (!ok || (l3 != AF_INET && l3 != AF_INET6)) {
    nfct_destroy(ct);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.parse_errors += ok ? 0 : 1;
    return true;
  }
  rec.hdr.type = RING_RECORD_CONNTRACK;
  rec.family = l3 == AF_INET ? 4 : 6;
  rec.proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  rec.id = nfct_get_attr_u32(ct, ATTR_ID);
  tuple_of(ct, false, rec.family, rec.proto, &rec.orig);
  tuple_of(ct, true, rec.family, rec.proto, &rec.reply);
  if (nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS) > 0) {
    rec.flags |= CT_FLAG_COUNTERS;
    rec.packets[0] = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS);
    rec.bytes[0] = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
    rec.packets[1] = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
    rec.bytes[1] = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
  }
  bool destroy = src == Source::Event && type == IPCTNL_MSG_CT_DELETE;
  if (destroy && nfct_attr_is_set(ct, ATTR_TIMESTAMP_STOP) > 0)
    rec.time_ns = nfct_get_attr_u64(ct, ATTR_TIMESTAMP_STOP);
  else
    rec.time_ns = uint64_t(clock_ns(CLOCK_REALTIME));
  nfct_destroy(ct);

  if (src == Source::Dump) {
    seen_.insert(rec.id);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.dumped++;
    if (known_.count(rec.id)) return true;
  } else if (destroy) {
    known_.erase(rec.id);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.events_destroy++;
  } else if (h->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.events_new++;
    if (known_.count(rec.id)) return true;  // already reported by a dump
  } else {
    return true;  // an UPDATE (not subscribed)
  }
  if (!destroy) known_[rec.id] = Known{rec.orig, rec.reply, rec.proto, rec.family, dump_gen_};
  rec.event = src == Source::Dump ? CT_EVENT_DUMP : destroy ? CT_EVENT_DESTROY : CT_EVENT_NEW;
  return push(rec);
}

// Reads every queued event; on ENOBUFS counts the overrun and resyncs.
bool ConntrackListener::read_events() {
  static thread_local std::vector<char> buf(kRecvBuf);
  for (;;) {
    ssize_t n = recv(ev_fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        overran_ = true;
        {
          std::lock_guard<std::mutex> lock(mu_);
          stats_.overruns++;
        }
        lost_since_dump_ = true;
        notify_(Notice::Overrun, ENOBUFS, "conntrack events lost (receive buffer overrun): resyncing");
        if (in_dump_) {
          resync_again_ = true;  // the dump in progress cannot vouch for what was lost
          continue;
        }
        if (!read_events()) return false;  // what is still queued, then a dump
        return dump();
      }
      return !stop_.load();  // EAGAIN: all read
    }
    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    int len = int(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len))
      if (!handle(h, Source::Event)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.busy_ns += clock_ns(CLOCK_MONOTONIC) - t0;
  }
}

bool ConntrackListener::dump() {
  static thread_local std::vector<char> buf(kRecvBuf);
  for (int attempt = 0; attempt < 5; attempt++) {
    struct {
      nlmsghdr nlh;
      nfgenmsg nfg;
    } req{};
    req.nlh.nlmsg_len = sizeof(req);
    req.nlh.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nlh.nlmsg_seq = ++seq_;
    req.nfg.nfgen_family = AF_UNSPEC;
    req.nfg.version = NFNETLINK_V0;
    if (send(dump_fd_, &req, sizeof(req), 0) < 0) {
      notify_(Notice::Error, errno, std::string("conntrack dump request: ") + std::strerror(errno));
      return !stop_.load();
    }
    seen_.clear();
    // Entries learned from events from here on may be created after the dump walked their
    // bucket: only entries known before this request can be proven gone by it.
    const uint64_t this_dump = ++dump_gen_;
    uint64_t requested_ns = uint64_t(clock_ns(CLOCK_REALTIME));
    bool lost_before = lost_since_dump_;
    lost_since_dump_ = false;
    bool done = false, interrupted = false;
    int64_t busy = 0;
    while (!done) {
      if (stop_.load()) return false;
      ssize_t n = recv(dump_fd_, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        notify_(Notice::Error, errno, std::string("conntrack dump: ") + std::strerror(errno));
        interrupted = true;
        break;
      }
      int64_t t0 = clock_ns(CLOCK_MONOTONIC);
      int len = int(n);
      for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq_) continue;
        if (h->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
        if (h->nlmsg_type == NLMSG_DONE) {
          done = true;
          break;
        }
        if (h->nlmsg_type == NLMSG_ERROR) {
          done = true;
          interrupted = true;
          break;
        }
        if (!handle(h, Source::Dump)) return false;
      }
      busy += clock_ns(CLOCK_MONOTONIC) - t0;
    }
    if (interrupted) {  // a partial dump cannot prove an entry gone: dump again
      lost_since_dump_ = lost_since_dump_ || lost_before;
      continue;
    }
    // Events sent while the dump ran (a dump reaps expired entries, whose DESTROY events
    // come on the event socket): read them first so they are not synthesized twice.
    in_dump_ = true;
    resync_again_ = false;
    bool ok = read_events();
    in_dump_ = false;
    if (!ok) return false;
    if (resync_again_) {
      lost_since_dump_ = true;
      continue;
    }
    // Known entries the dump no longer has ended while we were not listening.
    ring_conntrack_record rec{};
    rec.hdr.type = RING_RECORD_CONNTRACK;
    rec.event = CT_EVENT_DESTROY;
    rec.flags = CT_FLAG_SYNTHETIC;
    rec.time_ns = uint64_t(clock_ns(CLOCK_REALTIME));
    uint64_t synthetic = 0;
    for (auto it = known_.begin(); it != known_.end();) {
      if (seen_.count(it->first) || it->second.learned >= this_dump) {
        ++it;
        continue;
      }
      rec.id = it->first;
      rec.orig = it->second.orig;
      rec.reply = it->second.reply;
      rec.proto = it->second.proto;
      rec.family = it->second.family;
      it = known_.erase(it);
      synthetic++;
      if (!push(rec)) return false;
    }
    seen_.clear();
    // Tell JavaScript the dump is complete: connections it saw before the request whose
    // entry it never heard of (their NEW was lost with the overrun) are gone too.
    ring_conntrack_record done_rec{};
    done_rec.hdr.type = RING_RECORD_CONNTRACK;
    done_rec.event = CT_EVENT_DUMP_DONE;
    done_rec.flags = lost_before || lost_since_dump_ ? CT_FLAG_AFTER_OVERRUN : 0;
    done_rec.time_ns = requested_ns;
    if (!push(done_rec)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.resyncs++;
    stats_.synthetic_destroys += synthetic;
    stats_.busy_ns += busy;
    return true;
  }
  notify_(Notice::Error, EINTR, "conntrack dump interrupted 5 times in a row; will retry at the next resync");
  return !stop_.load();
}

void ConntrackListener::run() {
  pthread_setname_np(pthread_self(), "flowlogd-ct");  // in top, /proc/PID/task/*/comm
  // Subscribed before the dump: an entry created meanwhile is in one or the other.
  bool ok = dump();
  if (pushed_) notify_(Notice::Records, 0, "");
  pushed_ = false;
  pollfd fds[3] = {{ev_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}, {timer_fd_, POLLIN, 0}};
  int nfds = timer_fd_ >= 0 ? 3 : 2;
  while (ok && !stop_.load()) {
    if (poll(fds, nfds, -1) < 0 && errno != EINTR) break;
    if (stop_.load()) break;
    if (fds[1].revents & POLLIN) consume_wake();  // a poke: read now (below)
    if (fds[0].revents & (POLLIN | POLLERR)) ok = read_events();
    uint64_t v;
    if (ok && nfds == 3 && (fds[2].revents & POLLIN) && read(timer_fd_, &v, sizeof(v)) > 0) {
      ok = read_events() && dump();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.known = known_.size();
    }
    if (pushed_) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.reads++;
      }
      notify_(Notice::Records, 0, "");
      pushed_ = false;
      if (ok && !stop_.load() && !overran_ && coalesce_) coalesce();
    }
    overran_ = false;
  }
}

}  // namespace flowlogd
