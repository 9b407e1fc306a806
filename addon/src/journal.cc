// Journal. See journal.h.
#include "journal.h"

#include <dirent.h>
#include <fcntl.h>
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

Journal::Journal(std::string dir) : dir_(std::move(dir)), buf_(kBufferFrames * RING_RECORD_SIZE) {
  DIR* d = opendir(dir_.c_str());
  if (!d) throw sys_error("ERR_JOURNAL", errno, "opening the journal directory " + dir_);
  while (dirent* e = readdir(d)) {
    uint64_t n;
    if (std::strncmp(e->d_name, kPrefix, std::strlen(kPrefix)) == 0 &&
        std::sscanf(e->d_name + std::strlen(kPrefix), "%" SCNu64 ".log", &n) == 1 && n >= segment_)
      segment_ = n + 1;
  }
  closedir(d);
  if (!open_segment()) throw sys_error("ERR_JOURNAL", last_errno_, "creating a journal segment in " + dir_);
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

bool Journal::open_segment() {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%016" PRIu64 ".log", kPrefix, segment_);
  std::string path = dir_ + "/" + name;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) last_errno_ = errno;
  return fd_ >= 0;
}

void Journal::append(const ring_flow_record& rec, uint32_t generation) {
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
    errors_++;
  }
  while (off < used_ && !failed_) {
    ssize_t n = ::write(fd_, &buf_[off], used_ - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      failed_ = true;
      errors_++;
      last_errno_ = n < 0 ? errno : EIO;
      break;
    }
    off += size_t(n);
    bytes_ += uint64_t(n);
  }
  used_ = 0;
}

bool Journal::end_cycle(ring_cycle_record& c) {
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
  segment_++;
  if (!open_segment()) errors_++;  // cycles fail (not complete) until a rotation opens one
  return closed;
}

}  // namespace flowlogd
