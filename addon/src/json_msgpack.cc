// See json_msgpack.h. Every rule here mirrors src/export/json-msgpack.ts; where the two
// could drift, the unit tests (test/unit/export/json-msgpack.test.ts) feed both the
// same generated JSON and compare bytes.
#include "json_msgpack.h"

#include <charconv>
#include <cmath>
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace flowlogd {
namespace {

constexpr int kMaxDepth = 512;

inline bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

inline int hex_digit(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  uint8_t l = c | 0x20;
  return l >= 'a' && l <= 'f' ? l - 'a' + 10 : -1;
}

// The high bit of each byte of x (8 bytes, little-endian) that is a control, '"', '\\'
// or not ASCII. Bytes above the first flagged one may be flagged wrongly (a borrow runs
// upwards); the first one is exact, and only it is used.
inline uint64_t special_bytes(uint64_t x) {
  constexpr uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  uint64_t control = (x - ones * 0x20) & ~x;  // a byte below 0x20
  uint64_t quote = (q - ones) & ~q;           // a zero byte of x ^ '"'
  uint64_t backslash = (b - ones) & ~b;
  return (control | quote | backslash | x) & high;
}

inline void put16(uint8_t* p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}
inline void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}

// The keys of the last lines by their place in the line (the k-th key of the document,
// at any depth): flow log lines of one flush share their keys in one order, so the k-th
// key of this line is most likely the k-th key of the last. A key found again as the
// same plain bytes (its quotes included, so the string ends where the cached one does)
// is written from the cache: one compare instead of a scan whose end the branch
// predictor cannot know. A key that differs is scanned and takes the slot.
constexpr size_t kKeySlots = 128;
constexpr size_t kKeyBytes = 32;  // a key's JSON, quotes included: flow log keys are at most 26

struct KeySlot {
  uint8_t len;  // JSON bytes, quotes included; 0 = empty
  uint8_t json[kKeyBytes];
  uint8_t mp[kKeyBytes];  // its msgpack: fixstr header and bytes (len - 1 of them)
};

thread_local KeySlot key_cache[kKeySlots];

// The first `len` bytes of p and k are equal; both have kKeyBytes readable.
inline bool same_key(const uint8_t* p, const uint8_t* k, unsigned len) {
#ifdef __SSE2__
  __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
  __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(k));
  __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(k + 16));
  uint32_t eq = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(a0, b0))) |
                (static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(a1, b1))) << 16);
  uint32_t need = len >= 32 ? 0xffffffffu : (1u << len) - 1;
  return (eq & need) == need;
#else
  return std::memcmp(p, k, len) == 0;
#endif
}

struct Scanner {
  const uint8_t* src;
  size_t i;
  size_t end;
  uint8_t* out;
  size_t o;
  double end_time;
  KeySlot* keys;  // this thread's key_cache (looked up once a line: TLS costs a call here)
  size_t key_no = 0;

  // Bytes past the text read as 0, as the TypeScript scanner's `?? 0`.
  uint8_t at(size_t k) const { return k < end ? src[k] : 0; }

  void ws() {
    // JSON.stringify writes no whitespace: most calls find a token at once.
    if (i < end && src[i] > ' ') return;
    while (i < end) {
      uint8_t c = src[i];
      if (c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
      i++;
    }
  }

  void be16(uint16_t v) {
    put16(out + o, v);
    o += 2;
  }
  void be32(uint32_t v) {
    put32(out + o, v);
    o += 4;
  }

  // As msgpackr writes a number: an integer in [0, 2^32) or [-2^31, 0) in its smallest
  // form (-0 as 0), anything else as a float 64.
  void number(double v) {
    if (v >= 0 && v < 4294967296.0 && v == std::floor(v)) {
      uint32_t u = static_cast<uint32_t>(v);
      if (u < 0x80) {
        out[o++] = u;
      } else if (u < 0x100) {
        out[o++] = 0xcc;
        out[o++] = u;
      } else if (u < 0x10000) {
        out[o++] = 0xcd;
        be16(u);
      } else {
        out[o++] = 0xce;
        be32(u);
      }
    } else if (v >= -2147483648.0 && v < 0 && v == std::floor(v)) {
      int32_t s = static_cast<int32_t>(v);
      if (s >= -0x20) {
        out[o++] = static_cast<uint8_t>(0x100 + s);
      } else if (s >= -0x80) {
        out[o++] = 0xd0;
        out[o++] = static_cast<uint8_t>(s + 0x100);
      } else if (s >= -0x8000) {
        out[o++] = 0xd1;
        be16(static_cast<uint16_t>(s));
      } else {
        out[o++] = 0xd2;
        be32(static_cast<uint32_t>(s));
      }
    } else {
      out[o++] = 0xcb;
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      be32(static_cast<uint32_t>(bits >> 32));
      be32(static_cast<uint32_t>(bits));
    }
  }

  void str_header(size_t len) {
    if (len < 0x20) {
      out[o++] = 0xa0 | len;
    } else if (len < 0x100) {
      out[o++] = 0xd9;
      out[o++] = len;
    } else if (len < 0x10000) {
      out[o++] = 0xda;
      be16(len);
    } else {
      out[o++] = 0xdb;
      be32(len);
    }
  }

  // Bytes of the well-formed UTF-8 sequence at j (lead byte >= 0x80), 0 if not one.
  size_t utf8_length(size_t j) const {
    uint8_t c = src[j];
    auto cont = [&](size_t k) { return (at(j + k) & 0xc0) == 0x80; };
    if (c < 0xc2) return 0;
    if (c < 0xe0) return cont(1) ? 2 : 0;
    uint8_t c1 = at(j + 1);
    if (c < 0xf0) {
      uint8_t lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
      return c1 >= lo && c1 <= hi && cont(2) ? 3 : 0;
    }
    if (c < 0xf5) {
      uint8_t lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
      return c1 >= lo && c1 <= hi && cont(2) && cont(3) ? 4 : 0;
    }
    return 0;
  }

  int hex4(size_t j) const {
    if (j + 4 > end) return -1;
    int a = hex_digit(src[j]), b = hex_digit(src[j + 1]), c = hex_digit(src[j + 2]), d = hex_digit(src[j + 3]);
    return a < 0 || b < 0 || c < 0 || d < 0 ? -1 : (a << 12) | (b << 8) | (c << 4) | d;
  }

  // The string's bytes are copied behind a 1-byte (fixstr) header while they are scanned,
  // 16 at a time; a string of 32 bytes or more is moved up behind its longer header at
  // the end. A store may run up to 15 bytes past the string: the line's room bound
  // (3 bytes a byte of JSON) leaves more than that while 16 bytes of the line remain.
  bool string() {
    size_t s = i + 1, j = s;
    uint8_t* dst = out + o + 1 - s;  // dst[j] is where src[j] goes
    for (;;) {
      // Sixteen (SSE2) or eight bytes at a time up to the first that does not stand for
      // itself (most of a flow log line is plain ASCII in strings: this loop is where the
      // time goes). A signed byte below 0x20 is a control or not ASCII (>= 0x80).
#ifdef __SSE2__
      const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
      while (j + 16 <= end) {
        __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j), x);
        __m128i m =
            _mm_or_si128(_mm_cmplt_epi8(x, space), _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)));
        unsigned bits = static_cast<unsigned>(_mm_movemask_epi8(m));
        if (bits != 0) {
          j += __builtin_ctz(bits);
          goto found;
        }
        j += 16;
      }
#endif
      while (j + 8 <= end) {
        uint64_t x;
        std::memcpy(&x, src + j, 8);
        std::memcpy(dst + j, &x, 8);
        uint64_t m = special_bytes(x);
        if (m != 0) {
          j += __builtin_ctzll(m) >> 3;
          break;
        }
        j += 8;
      }
      while (j < end) {
        uint8_t c = src[j];
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
        dst[j++] = c;
      }
#ifdef __SSE2__
    found:
#endif
      if (j >= end) return false;
      uint8_t c = src[j];
      if (c == '"') break;
      if (c == '\\') return escaped_string(s);
      if (c < 0x20) return false;
      size_t n = utf8_length(j);
      if (n == 0) return false;
      std::memcpy(dst + j, src + j, n);
      j += n;
    }
    size_t len = j - s;
    if (len < 0x20) {
      out[o] = 0xa0 | len;
      o += 1 + len;
    } else {
      size_t body = o + 1;
      size_t head = len < 0x100 ? 2 : len < 0x10000 ? 3 : 5;
      std::memmove(out + o + head, out + body, len);
      str_header(len);
      o += len;
    }
    i = j + 1;
    return true;
  }

  // Decoded after a 5-byte header slot, then moved down behind its real header.
  bool escaped_string(size_t s) {
    size_t head = o, w = head + 5, j = s;
    for (;;) {
      if (j >= end) return false;
      uint8_t c = src[j];
      if (c == '"') break;
      if (c < 0x20) return false;
      if (c == '\\') {
        if (j + 1 >= end) return false;
        uint8_t e = src[j + 1];
        j += 2;
        if (e == 'u') {
          int cu = hex4(j);
          if (cu < 0) return false;
          j += 4;
          if (cu >= 0xd800 && cu <= 0xdbff && at(j) == '\\' && at(j + 1) == 'u') {
            int lo = hex4(j + 2);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
              j += 6;
              cu = 0x10000 + ((cu - 0xd800) << 10) + (lo - 0xdc00);
            }
          }
          if (cu < 0x80) {
            out[w++] = cu;
          } else if (cu < 0x800) {
            out[w++] = 0xc0 | (cu >> 6);
            out[w++] = 0x80 | (cu & 0x3f);
          } else if (cu >= 0xd800 && cu <= 0xdfff) {
            // A lone surrogate has no UTF-8 form: U+FFFD, as Buffer and msgpackr write it.
            out[w++] = 0xef;
            out[w++] = 0xbf;
            out[w++] = 0xbd;
          } else if (cu < 0x10000) {
            out[w++] = 0xe0 | (cu >> 12);
            out[w++] = 0x80 | ((cu >> 6) & 0x3f);
            out[w++] = 0x80 | (cu & 0x3f);
          } else {
            out[w++] = 0xf0 | (cu >> 18);
            out[w++] = 0x80 | ((cu >> 12) & 0x3f);
            out[w++] = 0x80 | ((cu >> 6) & 0x3f);
            out[w++] = 0x80 | (cu & 0x3f);
          }
          continue;
        }
        uint8_t b;
        switch (e) {
          case '"':
            b = '"';
            break;
          case '\\':
            b = '\\';
            break;
          case '/':
            b = '/';
            break;
          case 'b':
            b = 0x08;
            break;
          case 'f':
            b = 0x0c;
            break;
          case 'n':
            b = 0x0a;
            break;
          case 'r':
            b = 0x0d;
            break;
          case 't':
            b = 0x09;
            break;
          default:
            return false;
        }
        out[w++] = b;
        continue;
      }
      if (c < 0x80) {
        out[w++] = c;
        j++;
      } else {
        size_t n = utf8_length(j);
        if (n == 0) return false;
        std::memcpy(out + w, src + j, n);
        w += n;
        j += n;
      }
    }
    size_t len = w - head - 5;
    o = head;
    str_header(len);
    std::memmove(out + o, out + head + 5, len);
    o += len;
    i = j + 1;
    return true;
  }

  // A JSON number token, validated; with `is_end_time` its value is also the entry's time.
  bool number_token(bool is_end_time) {
    size_t s = i, k = i;
    bool neg = src[k] == '-';
    if (neg) k++;
    if (k >= end) return false;
    uint8_t c = src[k];
    uint64_t u = 0;
    if (c == '0') {
      k++;
    } else if (c >= '1' && c <= '9') {
      // An integer's digits as an integer (exact to 19 digits; past 15 it is not used).
      while (k < end && is_digit(src[k])) u = u * 10 + (src[k++] - '0');
    } else {
      return false;
    }
    bool simple = k - s - (neg ? 1 : 0) <= 15;  // exact as a double
    if (simple && !neg && u < 0x80 && (k >= end || (src[k] != '.' && (src[k] | 0x20) != 'e'))) {
      // A small non-negative integer, the most common number of a flow log line: its
      // msgpack is its own byte.
      i = k;
      if (is_end_time) end_time = static_cast<double>(u);
      out[o++] = static_cast<uint8_t>(u);
      return true;
    }
    double v = static_cast<double>(u);
    if (k < end && src[k] == '.') {
      simple = false;
      k++;
      size_t d = k;
      while (k < end && is_digit(src[k])) k++;
      if (k == d) return false;
    }
    if (k < end && (src[k] == 'e' || src[k] == 'E')) {
      simple = false;
      k++;
      if (k < end && (src[k] == '+' || src[k] == '-')) k++;
      size_t d = k;
      while (k < end && is_digit(src[k])) k++;
      if (k == d) return false;
    }
    double value;
    if (simple) {
      value = neg ? -v : v;
    } else {
      // Correctly rounded, as the engine's Number(); out of a double's range (JavaScript's
      // Infinity or 0) is left to the fallback.
      auto r = std::from_chars(reinterpret_cast<const char*>(src + s), reinterpret_cast<const char*>(src + k), value);
      if (r.ec != std::errc() || r.ptr != reinterpret_cast<const char*>(src + k)) return false;
    }
    i = k;
    if (is_end_time) end_time = value;
    number(value);
    return true;
  }

  bool literal(const char* word, size_t len, uint8_t byte) {
    if (i + len > end || std::memcmp(src + i, word, len) != 0) return false;
    i += len;
    out[o++] = byte;
    return true;
  }

  bool value(int depth) {
    ws();
    if (i >= end) return false;
    uint8_t c = src[i];
    if (c == '"') return string();
    if (c == '{') return depth < kMaxDepth && object(depth + 1);
    if (c == '[') return depth < kMaxDepth && array(depth + 1);
    if (c == '-' || is_digit(c)) return number_token(false);
    if (c == 't') return literal("true", 4, 0xc3);
    if (c == 'f') return literal("false", 5, 0xc2);
    if (c == 'n') return literal("null", 4, 0xc0);
    return false;
  }

  bool object(int depth) {
    i++;  // '{'
    size_t head = o;
    out[head] = 0xde;  // map 16, as msgpackr writes every map; its count patched below
    o = head + 3;
    size_t n = 0;
    ws();
    if (i < end && src[i] == '}') {
      i++;
    } else {
      for (;;) {
        ws();
        if (i >= end || src[i] != '"') return false;
        bool is_end_time;
        KeySlot* slot = key_no < kKeySlots ? &keys[key_no] : nullptr;
        key_no++;
        if (slot != nullptr && slot->len != 0 && i + kKeyBytes <= end && same_key(src + i, slot->json, slot->len)) {
          // The 32-byte copy may run past the key: 32 bytes of the line remain, and the
          // line's room bound (3 a byte) leaves more than that.
          std::memcpy(out + o, slot->mp, kKeyBytes);
          o += slot->len - 1;
          i += slot->len;
          is_end_time = depth == 1 && slot->len == 10 && std::memcmp(slot->json, "\"end_time\"", 10) == 0;
        } else {
          if (is_digit(at(i + 1))) return false;  // maybe integer-like: JS orders those first
          size_t key_at = o, key_src = i;
          if (!string()) return false;
          is_end_time = depth == 1 && o - key_at == 9 &&
                        std::memcmp(out + key_at,
                                    "\xa8"
                                    "end_time",
                                    9) == 0;
          size_t json_len = i - key_src;
          // Only a plain key (its msgpack is its JSON's bytes: no escapes) is kept.
          if (slot != nullptr && json_len <= kKeyBytes && o - key_at == json_len - 1) {
            slot->len = static_cast<uint8_t>(json_len);
            std::memset(slot->json, 0, kKeyBytes);
            std::memcpy(slot->json, src + key_src, json_len);
            std::memcpy(slot->mp, out + key_at, json_len - 1);
          }
        }
        ws();
        if (i >= end || src[i] != ':') return false;
        i++;
        if (is_end_time) {
          ws();
          // The last end_time wins, as in JSON.parse; only a number is a time.
          uint8_t c = at(i);
          end_time = NAN;
          if (c == '-' || is_digit(c)) {
            if (!number_token(true)) return false;
          } else if (!value(depth)) {
            return false;
          }
        } else if (!value(depth)) {
          return false;
        }
        n++;
        ws();
        if (i >= end) return false;
        uint8_t c = src[i++];
        if (c == '}') break;
        if (c != ',') return false;
      }
    }
    if (n > 0xffff) return false;
    out[head + 1] = n >> 8;
    out[head + 2] = n & 0xff;
    return true;
  }

  bool array(int depth) {
    i++;  // '['
    size_t head = o;
    o = head + 1;
    size_t n = 0;
    ws();
    if (i < end && src[i] == ']') {
      i++;
    } else {
      for (;;) {
        if (!value(depth)) return false;
        n++;
        ws();
        if (i >= end) return false;
        uint8_t c = src[i++];
        if (c == ']') break;
        if (c != ',') return false;
      }
    }
    if (n < 0x10) {
      out[head] = 0x90 | n;
      return true;
    }
    // Longer arrays need a bigger header: move the elements up.
    size_t grow = n < 0x10000 ? 2 : 4;
    std::memmove(out + head + 1 + grow, out + head + 1, o - head - 1);
    o += grow;
    out[head] = grow == 2 ? 0xdc : 0xdd;
    if (grow == 2)
      put16(out + head + 1, n);
    else
      put32(out + head + 1, n);
    return true;
  }
};

size_t number_length(double v) {
  if (v >= 0 && v < 4294967296.0 && v == std::floor(v)) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5;
  if (v >= -2147483648.0 && v < 0 && v == std::floor(v)) return v >= -0x20 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : 5;
  return 9;
}

bool is_safe_integer(double v) { return std::isfinite(v) && v == std::floor(v) && std::fabs(v) <= 9007199254740991.0; }

}  // namespace

size_t forward_entry(const uint8_t* src, size_t n, double now_sec, uint8_t* out) {
  Scanner sc{src, 0, n, out, 6, NAN, key_cache};
  out[0] = 0x92;
  // The time goes before the record but is known after it: the record is written after
  // a 5-byte slot (an integer time of this century is a uint 32) and moved if need be.
  if (!sc.value(0)) return 0;
  sc.ws();
  if (sc.i != n) return 0;
  size_t rec_end = sc.o;
  double t = is_safe_integer(sc.end_time) ? sc.end_time : now_sec;
  size_t time_end = 1 + number_length(t);
  if (time_end != 6) std::memmove(out + time_end, out + 6, rec_end - 6);
  sc.o = 1;
  sc.number(t);
  return time_end + (rec_end - 6);
}

}  // namespace flowlogd
