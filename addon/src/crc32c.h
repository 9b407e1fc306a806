// CRC-32C (Castagnoli, iSCSI's polynomial 0x1EDC6F41, reflected 0x82F63B78) for the
// spool's frames. The spool checks every byte it writes and replays; zlib's CRC-32 cost
// ~50 ms of a 100k-record Forward flush's main thread (BENCHMARKS.md, shipping fifth
// pass), and x86's SSE 4.2 crc32 instruction computes this polynomial at several bytes
// a cycle.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowlogd {

// The CRC-32C of data continued from crc (0 to start), with the usual pre- and
// post-inversion: crc32c("123456789") is 0xE3069283, and crc32c(b, crc32c(a)) equals
// crc32c(a + b).
uint32_t crc32c(const uint8_t* data, size_t n, uint32_t crc = 0);

// The same by the byte table alone: the reference the hardware path is tested against.
uint32_t crc32c_table(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace flowlogd
