// Pins. See pins.h.
#include "pins.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common.h"
#include "flow_record.h"

namespace flowlogd {

namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;
constexpr const char* kStateName = "state";

struct pin_state {
  uint64_t layout;      // FLOWLOGD_PIN_LAYOUT
  uint32_t generation;  // what the programs write (or are about to, once flipped)
  uint32_t _pad;
};

// Why a pinned map does not fit `m`, or "" when it does.
std::string mismatch(int fd, const bpf_map* m) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return std::string("unreadable: ") + std::strerror(errno);
  auto differs = [](const char* what, uint32_t pinned, uint32_t ours) {
    return what + std::string(" ") + std::to_string(pinned) + ", this build's " + std::to_string(ours);
  };
  if (info.type != uint32_t(bpf_map__type(m))) return differs("type", info.type, bpf_map__type(m));
  if (info.key_size != bpf_map__key_size(m)) return differs("key size", info.key_size, bpf_map__key_size(m));
  if (info.value_size != bpf_map__value_size(m)) return differs("value size", info.value_size, bpf_map__value_size(m));
  if (info.max_entries != bpf_map__max_entries(m))
    return differs("max_entries", info.max_entries, bpf_map__max_entries(m));
  if (info.map_flags != bpf_map__map_flags(m)) return differs("flags", info.map_flags, bpf_map__map_flags(m));
  return "";
}

}  // namespace

Pins::Pins(std::string dir, std::vector<PinnedMap> maps, bool with_state)
    : dir_(std::move(dir)), maps_(std::move(maps)), with_state_(with_state) {
  struct statfs fs {};
  if (statfs(dir_.c_str(), &fs) != 0) throw sys_error("ERR_PIN_DIR", errno, "pin directory " + dir_);
  if (long(fs.f_type) != kBpfFsMagic)
    throw sys_error("ERR_PIN_DIR", ENOTSUP,
                    "pin directory " + dir_ + " is not on a bpf filesystem (mount -t bpf bpf " + dir_ + ")");
  std::vector<int> fds;
  std::string why;
  size_t present = 0;
  for (const PinnedMap& p : maps_) {
    int fd = bpf_obj_get(path(p.name).c_str());
    fds.push_back(fd);
    if (fd < 0) {
      if (why.empty()) why = path(p.name) + ": " + std::strerror(errno);
      continue;
    }
    present++;
    std::string m = mismatch(fd, p.map);
    if (!m.empty() && why.empty()) why = path(p.name) + ": " + m;
  }
  pin_state st{};
  if (with_state_) {
    state_fd_ = bpf_obj_get(path(kStateName).c_str());
    uint32_t zero = 0;
    if (state_fd_ < 0) {
      if (why.empty()) why = path(kStateName) + ": " + std::strerror(errno);
    } else {
      present++;
      if (bpf_map_lookup_elem(state_fd_, &zero, &st) != 0) {
        if (why.empty()) why = path(kStateName) + ": unreadable: " + std::strerror(errno);
      } else if (st.layout != FLOWLOGD_PIN_LAYOUT && why.empty()) {
        why = path(kStateName) + ": layout " + std::to_string(st.layout) + ", this build's " +
              std::to_string(FLOWLOGD_PIN_LAYOUT);
      }
    }
  }
  if (why.empty()) {
    for (size_t i = 0; i < maps_.size(); i++) {
      int err = bpf_map__reuse_fd(maps_[i].map, fds[i]);
      if (err && why.empty()) why = path(maps_[i].name) + ": adopting it: " + std::strerror(-err);
    }
  }
  for (int fd : fds)
    if (fd >= 0) ::close(fd);  // reuse_fd keeps its own copy
  if (why.empty()) {
    adopted_ = true;
    generation_ = st.generation;
    notes_.push_back("adopted the pinned maps in " + dir_ + " (generation " + std::to_string(st.generation) + ")");
    return;
  }
  if (present > 0) {
    // A set that does not fit this build (an upgrade, another FlowMapSize) or a half-made
    // one: counted but undrained packets in it are lost (at most a drain interval's).
    notes_.push_back("made new maps instead of the pinned ones in " + dir_ + ": " + why);
    remove_all();
  }
  if (state_fd_ >= 0) ::close(state_fd_);
  state_fd_ = -1;
}

Pins::~Pins() {
  if (state_fd_ >= 0) ::close(state_fd_);
}

void Pins::remove_all() {
  for (const PinnedMap& p : maps_) unlink(path(p.name).c_str());
  if (with_state_) unlink(path(kStateName).c_str());
}

void Pins::pin_new() {
  if (adopted_) return;
  for (const PinnedMap& p : maps_) {
    int err = bpf_map__pin(p.map, path(p.name).c_str());
    if (err) throw sys_error("ERR_PIN", -err, "pinning " + path(p.name));
  }
  if (!with_state_) return;
  state_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "flowlogd_state", sizeof(uint32_t), sizeof(pin_state), 1, nullptr);
  if (state_fd_ < 0) throw sys_error("ERR_PIN", errno, "creating the pin state map");
  set_generation(0);
  // Last: a set without its state map is a half-made one, made anew by the next start.
  if (bpf_obj_pin(state_fd_, path(kStateName).c_str()) != 0)
    throw sys_error("ERR_PIN", errno, "pinning " + path(kStateName));
}

void Pins::set_generation(uint32_t g) {
  if (state_fd_ < 0) return;
  pin_state st{FLOWLOGD_PIN_LAYOUT, g, 0};
  uint32_t zero = 0;
  bpf_map_update_elem(state_fd_, &zero, &st, BPF_ANY);
}

}  // namespace flowlogd
