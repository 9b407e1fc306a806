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
//
// Bounded: segments stay until the flush that covers them is written, so the journal
// grows as `128 B × records a drain × drains an interval` (3.8 GB at 100k active
// connections and a 5-minute flush). Once the segments on disk hold `max_bytes`, a cycle
// is not journaled (its counts still go to JavaScript and the flush; a crash before
// that flush loses them) until a flush removes what it covers. The check is made at a
// cycle's start, so the journal passes its bound by at most one cycle.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "flow_record.h"

namespace flowlogd {

class Journal {
 public:
  // Opens `dir`/journal-<n>.log, n one past the highest segment there. Throws DatapathError.
  // `max_bytes`: the bound on the segments in `dir` (a previous run's count); 0: none.
  Journal(std::string dir, uint64_t max_bytes);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // At a drain cycle's start: whether it is journaled (the segments on disk are under the
  // bound). `became_full` is set when this cycle is the first one not journaled since
  // the journal last had room.
  bool begin_cycle(bool& became_full);
  // Buffers one flow or overflow record of the cycle of `generation` (counted, not
  // written, in a cycle begin_cycle() did not journal).
  void append(const ring_flow_record& rec, uint32_t generation);
  // Writes what is buffered and the cycle's end frame; false (errno in last_errno()) if
  // any write of the cycle failed: the cycle is then not complete in the journal. A cycle
  // not journaled writes nothing and returns true.
  bool end_cycle(ring_cycle_record& c);
  // Closes the current segment and opens the next; returns the closed one's number.
  uint64_t rotate();
  uint64_t bytes_written() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t write_errors() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t skipped_cycles() const { return skipped_cycles_.load(std::memory_order_relaxed); }
  uint64_t skipped_records() const { return skipped_records_.load(std::memory_order_relaxed); }
  // The segments' bytes on disk at the last cycle's start (this run's and a previous one's).
  uint64_t disk_bytes() const { return disk_bytes_.load(std::memory_order_relaxed); }
  uint64_t max_bytes() const { return max_bytes_; }
  int last_errno() const { return last_errno_; }

 private:
  bool open_segment();
  void write_buffer();

  // Bytes of the segments in dir_ other than the open one; those a flush removed
  // (ENOENT) are dropped from closed_.
  uint64_t closed_segment_bytes();
  std::string segment_path(uint64_t n) const;

  std::string dir_;
  uint64_t max_bytes_;
  int fd_ = -1;
  uint64_t segment_ = 0;
  uint64_t segment_bytes_ = 0;    // written to the open segment
  std::vector<uint64_t> closed_;  // numbers of the segments in dir_ other than the open one
  bool skipping_ = false;         // this cycle is not journaled
  // The counters are read by the JavaScript thread (Drainer::counters) while the drain
  // thread writes them.
  std::atomic<uint64_t> skipped_cycles_{0};
  std::atomic<uint64_t> skipped_records_{0};
  std::atomic<uint64_t> disk_bytes_{0};
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  bool failed_ = false;  // a write of the current cycle failed
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> errors_{0};
  int last_errno_ = 0;
};

// The CRC-32 (zlib's) of a 128-byte frame with hdr._reserved taken as zero.
uint32_t frame_crc(const void* frame);

}  // namespace flowlogd
