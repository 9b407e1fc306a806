// JSON text to a Fluent Forward entry in msgpack, byte to byte, in C++: the same
// scanner as src/export/json-msgpack.ts (which stays the reference and the fallback),
// here because in JavaScript it is ~4-6 µs of a ~1 KB flow log line, the largest
// share of what Forward costs a record (BENCHMARKS.md, shipping). What it writes and what
// it declines are exactly the TypeScript scanner's; the unit tests run both on the same
// inputs and compare the bytes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowlogd {

// Worst-case bytes forward_entry writes for `n` bytes of JSON ("9e9": 3 bytes, a
// float 64 of 9; the entry's header and time); entryRoom in src/export/json-msgpack.ts
// is the same bound, which TypeScript grows the output by when this one says no room.
inline size_t forward_entry_room(size_t n) { return 3 * n + 32; }

// Writes the entry `[time, record]` of the JSON text src[0, n) into `out` (which has
// forward_entry_room(n) bytes): time is the top-level object's integer end_time, else
// `now_sec`. Returns the bytes written, or 0 when it declines the text (not JSON, not
// UTF-8 inside a string, a key starting with a digit, more than 65,535 keys in an
// object, nesting deeper than 512, a number out of a double's range): the caller then
// goes through JSON.parse and msgpackr.
size_t forward_entry(const uint8_t* src, size_t n, double now_sec, uint8_t* out);

}  // namespace flowlogd
