// Link watcher: which interfaces the programs belong on, as they come, go and are
// renamed. It matches names against the configured globs with fnmatch(3), on the worker
// thread; `matches_any` is also what TypeScript calls (binding.cc's matchInterface), so
// there is one matcher.
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace flowlogd {

// True if `name` matches one of `globs` (fnmatch(3), no flags).
bool matches_any(const std::vector<std::string>& globs, const std::string& name);

// What the watcher drives (the datapath's set of attachments).
class LinkTarget {
 public:
  virtual ~LinkTarget() = default;
  virtual void attach(int ifindex, const std::string& name) = 0;  // no-op if attached
  virtual void detach(int ifindex) = 0;                           // no-op if not attached
  // Whether `ifindex` is attached; if it is and `name` is not empty, records it as its name.
  virtual bool renamed(int ifindex, const std::string& name) = 0;
  virtual std::vector<int> attached() const = 0;
  virtual void report(const DatapathError& e) = 0;  // a failure nobody called for
};

class LinkWatcher {
 public:
  // Subscribes to rtnetlink link events; throws DatapathError. Subscribed before the
  // first scan() so an interface created in between is not missed.
  LinkWatcher(std::vector<std::string> globs, LinkTarget& target);
  ~LinkWatcher();
  LinkWatcher(const LinkWatcher&) = delete;
  LinkWatcher& operator=(const LinkWatcher&) = delete;

  int fd() const { return fd_; }  // readable when link events wait
  // Attaches every existing interface that matches; throws DatapathError.
  void scan();
  // Handles every queued link event (worker thread).
  void read();

 private:
  bool matches(const std::string& name) const { return matches_any(globs_, name); }
  void resync();

  std::vector<std::string> globs_;
  LinkTarget& target_;
  int fd_ = -1;
};

}  // namespace flowlogd
