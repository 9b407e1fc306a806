// Node-API bindings of the export path's codecs (src/export): forwardEntries, Fluent
// Forward entries from JSON lines (json_msgpack.h), and crc32c / crc32cTable, the spool
// frames' checksum (crc32c.h). Added to the addon's exports by binding.cc.
#pragma once

#include <napi.h>

void add_codec_exports(Napi::Env env, Napi::Object exports);
