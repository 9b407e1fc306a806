// The Node-API layer: the addon's exports (the Datapath class, matchInterface, the record
// layout, stat and drop reason names, releaseFreeMemory; the shipping codecs in
// binding_codecs.cc) over the plain C++ core.
// It converts types and errors and nothing else: options arrive validated, with their
// defaults, from src/datapath/datapath.ts, and one missing or mistyped is a TypeError.
#include <napi.h>

#include <cmath>
#include <functional>
#include <memory>

#include "binding_codecs.h"
#include "datapath.h"

#ifdef __GLIBC__
#include <malloc.h>  // malloc_trim
#endif

namespace {

using flowlogd::Datapath;
using flowlogd::DatapathError;
using flowlogd::DatapathEvent;

const char* kStatNames[FLOW_STAT_MAX] = {
    "nonIp",          "parseL2",         "parseL3",        "parseL4",     "fragments",        "insertE2big",
    "insertEbusy",    "insertEnomem",    "insertOther",    "lostPackets", "lostBytes",        "ctLookups",
    "ctHits",         "dropsPolicy",     "dropsUnwatched", "dropsOther",  "dropInsertFailed", "cacheHits",
    "cacheEvictions", "overflowPackets", "overflowBytes",
};
static_assert(FLOW_STAT_MAX == 21, "name every flow_stat in kStatNames");

const char* kEventNames[] = {"records", "cycle",   "attached",          "detached",           "attach-failed",
                             "error",   "stopped", "conntrack-overrun", "leftover-unchecked", "journal-full"};
static_assert(sizeof(kEventNames) / sizeof(kEventNames[0]) == DatapathEvent::JournalFull + 1,
              "name every DatapathEvent kind in kEventNames");

Napi::Error to_js(Napi::Env env, const DatapathError& e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  err.Set("code", Napi::String::New(env, e.code));
  err.Set("errno", Napi::Number::New(env, e.err));
  return err;
}

// Options are read field by field; the core has no defaults of its own, so a field the
// caller left out is a mistake to name, not a value to guess.
std::string describe(Napi::Value v) {
  if (v.IsUndefined()) return "missing";
  if (v.IsString()) return "got \"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsNumber() || v.IsBoolean()) return "got " + v.ToString().Utf8Value();
  return v.IsArray() ? "got an array" : v.IsNull() ? "got null" : "got an object";
}

Napi::TypeError bad_option(Napi::Env env, const char* field, Napi::Value v, const char* want) {
  return Napi::TypeError::New(env,
                              std::string("Datapath option ") + field + " must be " + want + " (" + describe(v) + ")");
}

uint32_t u32_option(Napi::Object o, const char* field) {
  Napi::Value v = o.Get(field);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 4294967295.0 && std::floor(d) == d))
    throw bad_option(o.Env(), field, v, "an integer from 0 to 4294967295");
  return uint32_t(d);
}

bool bool_option(Napi::Object o, const char* field) {
  Napi::Value v = o.Get(field);
  if (!v.IsBoolean()) throw bad_option(o.Env(), field, v, "true or false");
  return v.As<Napi::Boolean>();
}

std::string string_option(Napi::Object o, const char* field) {
  Napi::Value v = o.Get(field);
  if (!v.IsString()) throw bad_option(o.Env(), field, v, "a string");
  return v.As<Napi::String>();
}

// An array of strings into `out`; false if `v` is anything else.
bool string_list(Napi::Value v, std::vector<std::string>& out) {
  if (!v.IsArray()) return false;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value g = a.Get(i);
    if (!g.IsString()) return false;
    out.push_back(g.As<Napi::String>());
  }
  return true;
}

flowlogd::DatapathOptions datapath_options(Napi::Env env, Napi::Value arg) {
  if (!arg.IsObject()) throw Napi::TypeError::New(env, "Datapath options must be an object");
  Napi::Object o = arg.As<Napi::Object>();
  flowlogd::DatapathOptions opts{};
  if (!string_list(o.Get("interfaces"), opts.interface_globs))
    throw bad_option(env, "interfaces", o.Get("interfaces"), "an array of strings");
  std::string mode = string_option(o, "attachMode");
  if (mode == "tcx")
    opts.attach_mode = flowlogd::AttachMode::Tcx;
  else if (mode == "clsact")
    opts.attach_mode = flowlogd::AttachMode::Clsact;
  else if (mode == "auto")
    opts.attach_mode = flowlogd::AttachMode::Auto;
  else
    throw bad_option(env, "attachMode", o.Get("attachMode"), "'auto', 'tcx' or 'clsact'");
  opts.load.max_flows = u32_option(o, "maxFlows");
  opts.load.use_conntrack = bool_option(o, "useConntrack");
  opts.load.drop_tracing = bool_option(o, "dropTracing");
  opts.load.max_drop_flows = u32_option(o, "maxDropFlows");
  opts.drain_interval_ms = u32_option(o, "drainIntervalMs");
  opts.ring_records = u32_option(o, "ringRecords");
  opts.conntrack_events = bool_option(o, "conntrackEvents");
  opts.conntrack.netns = string_option(o, "conntrackNetns");
  opts.conntrack.rcvbuf_bytes = u32_option(o, "conntrackRcvbufBytes");
  opts.conntrack.resync_interval_ms = u32_option(o, "conntrackResyncMs");
  opts.load.pin_dir = string_option(o, "pinDirectory");
  opts.journal_dir = string_option(o, "journalDirectory");
  Napi::Value last = o.Get("journalLastGeneration");
  double g = last.IsNumber() ? last.As<Napi::Number>().DoubleValue() : -2;
  if (!(g >= -1 && g <= 4294967295.0 && std::floor(g) == g))
    throw bad_option(env, "journalLastGeneration", last, "an integer from -1 to 4294967295");
  opts.journal_last_generation = int64_t(g);
  Napi::Value max = o.Get("journalMaxBytes");
  double m = max.IsNumber() ? max.As<Napi::Number>().DoubleValue() : -1;
  if (!(m >= 0 && m <= 9007199254740991.0 && std::floor(m) == m))
    throw bad_option(env, "journalMaxBytes", max, "an integer from 0 (no bound) to 2^53 - 1");
  opts.journal_max_bytes = uint64_t(m);
  return opts;
}

class DatapathHandle : public Napi::ObjectWrap<DatapathHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Datapath",
                       {
                           InstanceMethod<&DatapathHandle::RequestDrain>("requestDrain"),
                           InstanceMethod<&DatapathHandle::Read>("read"),
                           InstanceMethod<&DatapathHandle::Stop>("stop"),
                           InstanceMethod<&DatapathHandle::Close>("close"),
                           InstanceMethod<&DatapathHandle::Stats>("stats"),
                           InstanceMethod<&DatapathHandle::Interfaces>("interfaces"),
                           InstanceMethod<&DatapathHandle::ProgIds>("progIds"),
                           InstanceMethod<&DatapathHandle::TestRun>("testRun"),
                           InstanceMethod<&DatapathHandle::SetRef>("setRef"),
                           InstanceMethod<&DatapathHandle::PinNotes>("pinNotes"),
                           InstanceAccessor<&DatapathHandle::AttachMode>("attachMode"),
                       });
  }

  // new Datapath(options, onEvent(kind, info)): loads the programs, attaches them and
  // starts the worker; `options` has every field of NativeOptions (src/datapath/native.ts).
  // Events come back on the JavaScript thread through a thread-safe function.
  explicit DatapathHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DatapathHandle>(info) {
    Napi::Env env = info.Env();
    flowlogd::DatapathOptions opts = datapath_options(env, info[0]);
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "Datapath onEvent must be a function");

    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "flowlogd-datapath", 0, 1);
    // The daemon's own timers keep the process alive; an open datapath alone should not.
    tsfn_.Unref(env);
    auto tsfn = tsfn_;
    try {
      core_ = std::make_unique<Datapath>(opts, [tsfn](DatapathEvent&& ev) mutable {
        auto* heap = new DatapathEvent(std::move(ev));
        if (tsfn.NonBlockingCall(heap, Deliver) != napi_ok) delete heap;
      });
    } catch (const DatapathError& e) {
      tsfn_.Release();
      throw to_js(env, e);
    }
    // Process exit without close(): still detach (clsact filters would outlive us).
    cleanup_ = env.AddCleanupHook(std::function<void()>([this] {
      cleanup_ran_ = true;  // node-addon-api frees the hook's data after it runs
      Shutdown();
    }));
  }

  ~DatapathHandle() override {
    Shutdown();
    if (!cleanup_ran_ && !cleanup_.IsEmpty()) cleanup_.Remove(Env());
  }

 private:
  static void Deliver(Napi::Env env, Napi::Function cb, DatapathEvent* ev) {
    std::unique_ptr<DatapathEvent> owned(ev);
    if (!env || !cb) return;
    try {
      Napi::Object info = Napi::Object::New(env);
      if (ev->kind == DatapathEvent::Cycle) info.Set("cycle", Napi::Number::New(env, double(ev->cycle)));
      if (ev->ifindex) {
        info.Set("ifindex", Napi::Number::New(env, ev->ifindex));
        info.Set("name", Napi::String::New(env, ev->ifname));
        info.Set("mode", Napi::String::New(env, ev->mode));
      }
      if (ev->err) info.Set("errno", Napi::Number::New(env, ev->err));
      if (!ev->message.empty()) info.Set("message", Napi::String::New(env, ev->message));
      napi_value argv[2] = {Napi::String::New(env, kEventNames[ev->kind]), info};
      napi_value result;
      napi_status st = napi_call_function(env, env.Undefined(), cb, 2, argv, &result);
      if (st == napi_pending_exception) {
        // A throwing listener: report it as an uncaught exception, as an emitter would.
        napi_value exc;
        napi_get_and_clear_last_exception(env, &exc);
        napi_fatal_exception(env, exc);
      }
      // Any other failure means the environment is shutting down: nothing to tell.
    } catch (...) {
      // Same: an event arriving during teardown has no one to go to.
    }
  }

  void Shutdown() {
    if (core_) {
      core_->close();
      core_.reset();
      tsfn_.Release();
    }
  }

  Datapath& core(Napi::Env env) {
    if (!core_) throw to_js(env, DatapathError{"ERR_CLOSED", 9, "the datapath is closed"});
    return *core_;
  }

  // requestDrain(rotate): rotate closes the journal segment after that cycle.
  Napi::Value RequestDrain(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(core(info.Env()).request_drain(info[0].ToBoolean())));
  }

  Napi::Value PinNotes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto notes = core(env).pin_notes();
    Napi::Array out = Napi::Array::New(env, notes.size());
    for (size_t i = 0; i < notes.size(); i++) out.Set(uint32_t(i), notes[i]);
    return out;
  }

  // read(into: Uint8Array): number of 128-byte records copied into `into`.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Uint8Array into = info[0].As<Napi::Uint8Array>();
    size_t n = core(info.Env()).read_records(into.Data(), into.ByteLength() / RING_RECORD_SIZE);
    return Napi::Number::New(info.Env(), double(n));
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    core(info.Env()).stop();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    flowlogd::DatapathStats s = core(env).stats();
    Napi::Object kernel = Napi::Object::New(env);
    for (int i = 0; i < FLOW_STAT_MAX; i++) kernel.Set(kStatNames[i], Napi::Number::New(env, double(s.kernel[i])));
    Napi::Object o = Napi::Object::New(env);
    o.Set("kernel", kernel);
    o.Set("drainCycles", Napi::Number::New(env, double(s.drain_cycles)));
    o.Set("drainSleeps", Napi::Number::New(env, double(s.drain_sleeps)));
    o.Set("drainAsleep", Napi::Boolean::New(env, s.drain_asleep));
    o.Set("recordsDrained", Napi::Number::New(env, double(s.drain.records_drained)));
    o.Set("drainNs", Napi::Number::New(env, double(s.drain.drain_ns_total)));
    o.Set("ringFullWaits", Napi::Number::New(env, double(s.drain.ring_full_waits)));
    o.Set("cacheMerged", Napi::Number::New(env, double(s.drain.cache_merged)));
    o.Set("cacheMergeLost", Napi::Number::New(env, double(s.drain.cache_merge_lost)));
    o.Set("journalBytes", Napi::Number::New(env, double(s.drain.journal_bytes)));
    o.Set("journalErrors", Napi::Number::New(env, double(s.drain.journal_errors)));
    o.Set("journalSkippedCycles", Napi::Number::New(env, double(s.drain.journal_skipped_cycles)));
    o.Set("journalSkippedRecords", Napi::Number::New(env, double(s.drain.journal_skipped_records)));
    o.Set("journalDiskBytes", Napi::Number::New(env, double(s.drain.journal_disk_bytes)));
    o.Set("restartDiscarded", Napi::Number::New(env, double(s.drain.restart_discarded)));
    o.Set("attachFailures", Napi::Number::New(env, double(s.attach_failures)));
    if (s.conntrack) {
      Napi::Object ct = Napi::Object::New(env);
      ct.Set("eventsNew", Napi::Number::New(env, double(s.ct.events_new)));
      ct.Set("eventsDestroy", Napi::Number::New(env, double(s.ct.events_destroy)));
      ct.Set("dumped", Napi::Number::New(env, double(s.ct.dumped)));
      ct.Set("overruns", Napi::Number::New(env, double(s.ct.overruns)));
      ct.Set("resyncs", Napi::Number::New(env, double(s.ct.resyncs)));
      ct.Set("syntheticDestroys", Napi::Number::New(env, double(s.ct.synthetic_destroys)));
      ct.Set("parseErrors", Napi::Number::New(env, double(s.ct.parse_errors)));
      ct.Set("known", Napi::Number::New(env, double(s.ct.known)));
      ct.Set("rcvbufBytes", Napi::Number::New(env, double(s.ct.rcvbuf_bytes)));
      ct.Set("busyNs", Napi::Number::New(env, double(s.ct.busy_ns)));
      ct.Set("reads", Napi::Number::New(env, double(s.ct.reads)));
      o.Set("conntrack", ct);
    }
    Napi::Object drops = Napi::Object::New(env);
    for (auto& [reason, n] : s.drop_reasons) drops.Set(std::to_string(reason), Napi::Number::New(env, double(n)));
    o.Set("dropReasons", drops);
    return o;
  }

  Napi::Value Interfaces(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto list = core(env).interfaces();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("ifindex", list[i].ifindex);
      o.Set("name", list[i].name);
      o.Set("mode", list[i].mode);
      out.Set(uint32_t(i), o);
    }
    return out;
  }

  Napi::Value ProgIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = core(env).prog_ids();
    Napi::Array out = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) out.Set(uint32_t(i), ids[i]);
    return out;
  }

  Napi::Value TestRun(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array pkt = info[0].As<Napi::Uint8Array>();
    bool egress = info[1].ToBoolean();
    try {
      return Napi::Number::New(env, core(env).test_run(pkt.Data(), pkt.ByteLength(), egress));
    } catch (const DatapathError& e) { throw to_js(env, e); }
  }

  // setRef(true) while JavaScript awaits a drain, so the loop stays alive for it.
  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    if (core_) {
      if (info[0].ToBoolean())
        tsfn_.Ref(info.Env());
      else
        tsfn_.Unref(info.Env());
    }
    return info.Env().Undefined();
  }

  Napi::Value AttachMode(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), core(info.Env()).attach_mode());
  }

  std::unique_ptr<Datapath> core_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  bool cleanup_ran_ = false;
};

// Offsets of every shared field, for the test that keeps src/datapath/layout.ts honest.
Napi::Object Layout(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#define F(name, expr) o.Set(name, Napi::Number::New(env, double(expr)))
  F("RING_RECORD_SIZE", RING_RECORD_SIZE);
  F("RING_RECORD_FLOW", RING_RECORD_FLOW);
  F("RING_RECORD_CYCLE", RING_RECORD_CYCLE);
  F("cycle.generation", offsetof(ring_cycle_record, generation));
  F("cycle.records", offsetof(ring_cycle_record, records));
  F("cycle.cycle", offsetof(ring_cycle_record, cycle));
  F("cycle.segment_closed", offsetof(ring_cycle_record, segment_closed));
  F("ring.pad2", offsetof(ring_flow_record, _pad2));
  F("ring.type", offsetof(ring_flow_record, hdr.type));
  F("ring.key", offsetof(ring_flow_record, key));
  F("ring.counters", offsetof(ring_flow_record, counters));
  F("ring.drop_reason", offsetof(ring_flow_record, drop_reason));
  F("RING_RECORD_CONNTRACK", RING_RECORD_CONNTRACK);
  F("RING_RECORD_OVERFLOW", RING_RECORD_OVERFLOW);
  F("ct.event", offsetof(ring_conntrack_record, event));
  F("ct.proto", offsetof(ring_conntrack_record, proto));
  F("ct.family", offsetof(ring_conntrack_record, family));
  F("ct.flags", offsetof(ring_conntrack_record, flags));
  F("ct.id", offsetof(ring_conntrack_record, id));
  F("ct.orig", offsetof(ring_conntrack_record, orig));
  F("ct.reply", offsetof(ring_conntrack_record, reply));
  F("ct.packets", offsetof(ring_conntrack_record, packets));
  F("ct.bytes", offsetof(ring_conntrack_record, bytes));
  F("ct.time_ns", offsetof(ring_conntrack_record, time_ns));
  F("CT_EVENT_NEW", CT_EVENT_NEW);
  F("CT_EVENT_DESTROY", CT_EVENT_DESTROY);
  F("CT_EVENT_DUMP", CT_EVENT_DUMP);
  F("CT_EVENT_DUMP_DONE", CT_EVENT_DUMP_DONE);
  F("CT_FLAG_SYNTHETIC", CT_FLAG_SYNTHETIC);
  F("CT_FLAG_COUNTERS", CT_FLAG_COUNTERS);
  F("CT_FLAG_AFTER_OVERRUN", CT_FLAG_AFTER_OVERRUN);
  F("tuple.src", offsetof(ct_tuple, src));
  F("tuple.dst", offsetof(ct_tuple, dst));
  F("tuple.sport", offsetof(ct_tuple, sport));
  F("tuple.dport", offsetof(ct_tuple, dport));
  F("tuple.size", sizeof(ct_tuple));
  F("key.ifindex", offsetof(flow_key, ifindex));
  F("key.addr_a", offsetof(flow_key, addr_a));
  F("key.addr_b", offsetof(flow_key, addr_b));
  F("key.port_a", offsetof(flow_key, port_a));
  F("key.port_b", offsetof(flow_key, port_b));
  F("key.proto", offsetof(flow_key, proto));
  F("key.family", offsetof(flow_key, family));
  F("key.size", sizeof(flow_key));
  F("counters.packets", offsetof(flow_counters, packets));
  F("counters.bytes", offsetof(flow_counters, bytes));
  F("counters.first_seen_ns", offsetof(flow_counters, first_seen_ns));
  F("counters.last_seen_ns", offsetof(flow_counters, last_seen_ns));
  F("counters.tcp_flags", offsetof(flow_counters, tcp_flags));
  F("counters.initiator", offsetof(flow_counters, initiator));
  F("counters.initiator_how", offsetof(flow_counters, initiator_how));
  F("counters.first_hook", offsetof(flow_counters, first_hook));
  F("counters.first_dir", offsetof(flow_counters, first_dir));
  F("counters.icmp_type", offsetof(flow_counters, icmp_type));
  F("counters.icmp_code", offsetof(flow_counters, icmp_code));
  F("counters.size", sizeof(flow_counters));
#undef F
  return o;
}

// Hands the free pages of the process's malloc heaps back to the kernel; true if any were.
// glibc keeps freed blocks for reuse, and after a flush's garbage is collected that is
// megabytes the daemon will not need until the next flush (BENCHMARKS.md, daemon).
Napi::Value ReleaseFreeMemory(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// matchInterface(globs: string[], name: string): whether `name` matches one of `globs`,
// by the same fnmatch(3) the link watcher attaches with, so TypeScript and the addon
// never disagree about an interface.
Napi::Value MatchInterface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::string> globs;
  if (!string_list(info[0], globs))
    throw Napi::TypeError::New(env, "matchInterface: globs must be an array of strings");
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "matchInterface: name must be a string");
  return Napi::Boolean::New(env, flowlogd::matches_any(globs, info[1].As<Napi::String>()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Datapath", DatapathHandle::Define(env));
  exports.Set("releaseFreeMemory", Napi::Function::New(env, ReleaseFreeMemory, "releaseFreeMemory"));
  exports.Set("matchInterface", Napi::Function::New(env, MatchInterface, "matchInterface"));
  add_codec_exports(env, exports);
  exports.Set("layout", Layout(env));
  Napi::Array names = Napi::Array::New(env, FLOW_STAT_MAX);
  for (uint32_t i = 0; i < FLOW_STAT_MAX; i++) names.Set(i, kStatNames[i]);
  exports.Set("statNames", names);
  auto reasons = flowlogd::BpfObjects::drop_reason_names();
  Napi::Object reason_names = Napi::Object::New(env);
  for (auto& [v, name] : reasons) reason_names.Set(std::to_string(v), name);
  exports.Set("dropReasonNames", reason_names);
  return exports;
}

}  // namespace

NODE_API_MODULE(flowlogd, Init)
