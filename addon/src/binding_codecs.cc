// See binding_codecs.h. Types and errors converted, nothing else.
#include "binding_codecs.h"

#include <cstring>

#include "crc32c.h"
#include "json_msgpack.h"

namespace {

// forwardEntries(data, from, out, o, nowSec, state): Fluent Forward entries of the
// '\n'-separated JSON lines of data[from..] written into out[o..] (json_msgpack.h),
// until the data ends (returns 0), a line is declined (1: the line starts at state[0]
// and ends at state[3], for TypeScript's JSON.parse + msgpackr fallback) or out has no
// room for the next line (2: grow it and call again). state[0] is where to go on,
// state[1] the bytes of out in use, state[2] the entries written. Buffers in, numbers
// out through `state`: no JavaScript object per call.
Napi::Value ForwardEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[2].IsTypedArray() || !info[5].IsTypedArray())
    throw Napi::TypeError::New(env, "forwardEntries: data, out and state must be typed arrays");
  auto data = info[0].As<Napi::Uint8Array>();
  auto out = info[2].As<Napi::Uint8Array>();
  auto state = info[5].As<Napi::Float64Array>();
  if (state.ElementLength() < 4) throw Napi::RangeError::New(env, "forwardEntries: state needs 4 slots");
  size_t n = data.ByteLength(), cap = out.ByteLength();
  size_t pos = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
  size_t o = static_cast<size_t>(info[3].As<Napi::Number>().DoubleValue());
  double now = info[4].As<Napi::Number>().DoubleValue();
  if (pos > n || o > cap) throw Napi::RangeError::New(env, "forwardEntries: from or o out of range");
  const uint8_t* src = data.Data();
  uint8_t* dst = out.Data();
  double entries = 0;
  int status = 0;
  while (pos < n) {
    const void* nl = std::memchr(src + pos, '\n', n - pos);
    size_t end = nl ? static_cast<const uint8_t*>(nl) - src : n;
    if (end > pos) {
      if (o + flowlogd::forward_entry_room(end - pos) > cap) {
        status = 2;
        break;
      }
      size_t w = flowlogd::forward_entry(src + pos, end - pos, now, dst + o);
      if (w == 0) {
        state[3] = static_cast<double>(end);
        status = 1;
        break;
      }
      o += w;
      entries++;
    }
    pos = end + 1;
  }
  state[0] = static_cast<double>(pos < n ? pos : n);
  state[1] = static_cast<double>(o);
  state[2] = entries;
  return Napi::Number::New(env, status);
}

// crc32c(data, crc = 0) and crc32cTable(data, crc = 0): the spool frames' checksum
// (crc32c.h), continued from crc; crc32cTable is the portable path, for the tests to hold
// the hardware one to.
template <uint32_t (*Fn)(const uint8_t*, size_t, uint32_t)>
Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "crc32c: data must be a typed array");
  auto data = info[0].As<Napi::TypedArray>();
  uint32_t crc = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "crc32c: crc must be a number");
    crc = info[1].As<Napi::Number>().Uint32Value();
  }
  const auto* p = static_cast<const uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  return Napi::Number::New(env, Fn(p, data.ByteLength(), crc));
}

}  // namespace

void add_codec_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("forwardEntries", Napi::Function::New(env, ForwardEntries, "forwardEntries"));
  exports.Set("crc32c", Napi::Function::New(env, Crc32c<flowlogd::crc32c>, "crc32c"));
  exports.Set("crc32cTable", Napi::Function::New(env, Crc32c<flowlogd::crc32c_table>, "crc32cTable"));
}
