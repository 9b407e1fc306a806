{
  "targets": [
    {
      "target_name": "flowlogd",
      "sources": [
        "addon/src/caps.cc",
        "addon/src/loader.cc",
        "addon/src/pins.cc",
        "addon/src/journal.cc",
        "addon/src/attachment.cc",
        "addon/src/link_watcher.cc",
        "addon/src/drainer.cc",
        "addon/src/worker.cc",
        "addon/src/stats.cc",
        "addon/src/datapath.cc",
        "addon/src/conntrack.cc",
        "addon/src/json_msgpack.cc",
        "addon/src/crc32c.cc",
        "addon/src/binding_codecs.cc",
        "addon/src/binding.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "bpf/include",
        "bpf/.output"
      ],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-lbpf", "-lelf", "-lz", "-lnetfilter_conntrack", "-lmnl"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=gnu++20", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter", "-Wno-unused-result"]
    }
  ]
}
