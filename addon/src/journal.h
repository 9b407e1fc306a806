// Journal: every drain cycle's records, appended to segment files in the state directory
// before the kernel entries are deleted, so that a SIGKILL between a drain and the flush
// that writes its counts loses nothing (README, "Restarts"). JavaScript replays the
// complete cycles at start (src/datapath/journal.ts) and unlinks the segments a written
// flush covers; the worker closes a segment at the end of the cycle a flush waits for.
//
// A frame is one 128-byte ring record with the CRC-32 of its bytes in hdr._reserved;
// a flow or overflow frame carries its cycle's generation in _pad2, and a cycle ends with
// a ring_cycle_record frame (its generation and record count). write() only, no fsync:
// what a killed process wrote is in the page cache, and a kernel crash loses the pinned
// maps as well.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flow_record.h"

namespace flowlogd {

class Journal {
 public:
  // Opens `dir`/journal-<n>.log, n one past the highest segment there. Throws DatapathError.
  explicit Journal(std::string dir);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Buffers one flow or overflow record of the cycle of `generation`.
  void append(const ring_flow_record& rec, uint32_t generation);
  // Writes what is buffered and the cycle's end frame; false (errno in last_errno()) if
  // any write of the cycle failed: the cycle is then not complete in the journal.
  bool end_cycle(ring_cycle_record& c);
  // Closes the current segment and opens the next; returns the closed one's number.
  uint64_t rotate();
  uint64_t bytes_written() const { return bytes_; }
  uint64_t write_errors() const { return errors_; }
  int last_errno() const { return last_errno_; }

 private:
  bool open_segment();
  void write_buffer();

  std::string dir_;
  int fd_ = -1;
  uint64_t segment_ = 0;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  bool failed_ = false;  // a write of the current cycle failed
  uint64_t bytes_ = 0;
  uint64_t errors_ = 0;
  int last_errno_ = 0;
};

// The CRC-32 (zlib's) of a 128-byte frame with hdr._reserved taken as zero.
uint32_t frame_crc(const void* frame);

}  // namespace flowlogd
