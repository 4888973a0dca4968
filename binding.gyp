{
  "targets": [
    {
      "target_name": "criu_ns",
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fexceptions"],
      "conditions": [
        ["OS=='linux'", {"sources": ["native/ns_linux.cc"]}, {"sources": ["native/ns_stub.cc"]}]
      ]
    }
  ]
}
