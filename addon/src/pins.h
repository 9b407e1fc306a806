// Pins: the kernel maps that hold counts not yet drained, pinned in a bpffs directory so
// that a restarted flowlogd adopts them and loses nothing counted meanwhile (README,
// "Restarts"). Pinned maps are adopted only when every one of a set matches this build
// (type, key and value size, entries, flags) and, for the flow set, the state map's
// layout tag is FLOWLOGD_PIN_LAYOUT; otherwise the set is unpinned and made anew, and a
// note names the path and why. The state map (ours, not the programs') keeps the map
// generation the programs write, set before every flip, so a restart knows which
// generation a crashed run was draining.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct bpf_map;

namespace flowlogd {

struct PinnedMap {
  bpf_map* map;
  const char* name;  // file under the pin directory
};

class Pins {
 public:
  // Before the maps are loaded: adopts `maps` (bpf_map__reuse_fd) or removes the stale
  // pins. `with_state`: the set has the state map. Throws DatapathError.
  Pins(std::string dir, std::vector<PinnedMap> maps, bool with_state);
  ~Pins();
  Pins(const Pins&) = delete;
  Pins& operator=(const Pins&) = delete;

  bool adopted() const { return adopted_; }
  // Adopted: the generation the crashed or stopped run's programs wrote last.
  uint32_t generation() const { return generation_; }
  const std::vector<std::string>& notes() const { return notes_; }
  // After load: pins every map that was not adopted (the state map last). Throws.
  void pin_new();
  // Records the generation the programs are about to be flipped to.
  void set_generation(uint32_t g);

 private:
  std::string path(const char* name) const { return dir_ + "/" + name; }
  void remove_all();

  std::string dir_;
  std::vector<PinnedMap> maps_;
  bool with_state_;
  bool adopted_ = false;
  uint32_t generation_ = 0;
  int state_fd_ = -1;
  std::vector<std::string> notes_;
};

}  // namespace flowlogd
