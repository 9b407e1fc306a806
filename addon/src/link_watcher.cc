// Link watcher. See link_watcher.h.
#include "link_watcher.h"

#include <fnmatch.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace flowlogd {

bool matches_any(const std::vector<std::string>& globs, const std::string& name) {
  for (const auto& g : globs)
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

LinkWatcher::LinkWatcher(std::vector<std::string> globs, LinkTarget& target)
    : globs_(std::move(globs)), target_(target) {
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd_ < 0) throw sys_error("ERR_NETLINK", errno, "opening rtnetlink");
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = RTMGRP_LINK;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    int e = errno;
    ::close(fd_);
    throw sys_error("ERR_NETLINK", e, "subscribing to link events");
  }
}

LinkWatcher::~LinkWatcher() {
  if (fd_ >= 0) ::close(fd_);
}

void LinkWatcher::scan() {
  struct if_nameindex* all = if_nameindex();
  if (!all) throw sys_error("ERR_INTERFACES", errno, "listing interfaces");
  std::vector<std::pair<int, std::string>> found;
  for (struct if_nameindex* i = all; i->if_index != 0; i++) found.emplace_back(i->if_index, i->if_name);
  if_freenameindex(all);
  for (auto& [ifindex, name] : found)
    if (matches(name)) target_.attach(ifindex, name);
}

// After missed link events: nothing matching stays unattached, nothing deleted or
// renamed away stays attached.
void LinkWatcher::resync() {
  try {
    scan();
  } catch (const DatapathError& e) { target_.report(e); }
  for (int ifindex : target_.attached()) {
    char name[IF_NAMESIZE] = {};
    if (!if_indextoname(ifindex, name) || !matches(name)) target_.detach(ifindex);
  }
}

void LinkWatcher::read() {
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == ENOBUFS) {
        resync();
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
        target_.detach(ifi->ifi_index);
        continue;
      }
      bool attached = target_.renamed(ifi->ifi_index, name);
      if (!attached && matches(name))
        target_.attach(ifi->ifi_index, name);
      else if (attached && !matches(name))
        target_.detach(ifi->ifi_index);
    }
  }
}

}  // namespace flowlogd
