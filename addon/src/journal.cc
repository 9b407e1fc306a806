// Journal. See journal.h.
#include "journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common.h"

namespace flowlogd {

namespace {

constexpr size_t kBufferFrames = 8192;  // 1 MiB a write
constexpr const char* kPrefix = "journal-";

}  // namespace

uint32_t frame_crc(const void* frame) {
  uint8_t copy[RING_RECORD_SIZE];
  std::memcpy(copy, frame, RING_RECORD_SIZE);
  std::memset(copy + offsetof(ring_record_header, _reserved), 0, sizeof(uint32_t));
  return uint32_t(crc32(0L, copy, RING_RECORD_SIZE));
}

Journal::Journal(std::string dir, uint64_t max_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes), buf_(kBufferFrames * RING_RECORD_SIZE) {
  DIR* d = opendir(dir_.c_str());
  if (!d) throw sys_error("ERR_JOURNAL", errno, "opening the journal directory " + dir_);
  while (dirent* e = readdir(d)) {
    uint64_t n;
    if (std::strncmp(e->d_name, kPrefix, std::strlen(kPrefix)) == 0 &&
        std::sscanf(e->d_name + std::strlen(kPrefix), "%" SCNu64 ".log", &n) == 1) {
      closed_.push_back(n);  // a previous run's: on disk until the first flush removes it
      if (n >= segment_) segment_ = n + 1;
    }
  }
  closedir(d);
  if (!open_segment()) throw sys_error("ERR_JOURNAL", last_errno_, "creating a journal segment in " + dir_);
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

std::string Journal::segment_path(uint64_t n) const {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%016" PRIu64 ".log", kPrefix, n);
  return dir_ + "/" + name;
}

bool Journal::open_segment() {
  segment_bytes_ = 0;
  fd_ = ::open(segment_path(segment_).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) last_errno_ = errno;
  return fd_ >= 0;
}

uint64_t Journal::closed_segment_bytes() {
  uint64_t sum = 0;
  size_t kept = 0;
  for (uint64_t n : closed_) {
    struct stat st;
    if (::stat(segment_path(n).c_str(), &st) != 0) continue;  // removed by a flush (or by hand)
    sum += uint64_t(st.st_size);
    closed_[kept++] = n;
  }
  closed_.resize(kept);
  return sum;
}

bool Journal::begin_cycle(bool& became_full) {
  became_full = false;
  if (max_bytes_ == 0) return true;
  // A stat() a closed segment a cycle: each flush removes the segments it covers, so
  // there are one or two.
  uint64_t disk = segment_bytes_ + closed_segment_bytes();
  disk_bytes_.store(disk, std::memory_order_relaxed);
  bool was = skipping_;
  skipping_ = disk >= max_bytes_;
  if (skipping_) {
    skipped_cycles_.fetch_add(1, std::memory_order_relaxed);
    became_full = !was;
  }
  return !skipping_;
}

void Journal::append(const ring_flow_record& rec, uint32_t generation) {
  if (skipping_) {
    skipped_records_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (used_ == buf_.size()) write_buffer();
  auto* f = reinterpret_cast<ring_flow_record*>(&buf_[used_]);
  *f = rec;
  f->_pad2 = generation;
  f->hdr._reserved = 0;
  f->hdr._reserved = frame_crc(f);
  used_ += RING_RECORD_SIZE;
}

void Journal::write_buffer() {
  size_t off = 0;
  if (fd_ < 0 && used_ > 0 && !failed_) {  // a segment that could not be opened
    failed_ = true;
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
  while (off < used_ && !failed_) {
    ssize_t n = ::write(fd_, &buf_[off], used_ - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      failed_ = true;
      errors_.fetch_add(1, std::memory_order_relaxed);
      last_errno_ = n < 0 ? errno : EIO;
      break;
    }
    off += size_t(n);
    bytes_.fetch_add(uint64_t(n), std::memory_order_relaxed);
    segment_bytes_ += uint64_t(n);
  }
  used_ = 0;
}

bool Journal::end_cycle(ring_cycle_record& c) {
  if (skipping_) return true;  // nothing of it was written: not a failed cycle
  if (used_ == buf_.size()) write_buffer();
  c.hdr.type = RING_RECORD_CYCLE;
  c.hdr._reserved = 0;
  c.hdr._reserved = frame_crc(&c);
  std::memcpy(&buf_[used_], &c, RING_RECORD_SIZE);
  used_ += RING_RECORD_SIZE;
  write_buffer();
  bool ok = !failed_;
  failed_ = false;  // the next cycle starts afresh
  return ok;
}

uint64_t Journal::rotate() {
  write_buffer();
  failed_ = false;
  uint64_t closed = segment_;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  closed_.push_back(closed);
  segment_++;
  if (!open_segment())
    errors_.fetch_add(1, std::memory_order_relaxed);  // cycles fail (not complete) until a rotation opens one
  return closed;
}

}  // namespace flowlogd
