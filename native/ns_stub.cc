// Non-Linux builds: the package installs everywhere; the loader reports "needs Linux" only
// when a namespace capability is actually used.
#include <napi.h>

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", Napi::Boolean::New(env, false));
  return exports;
}

NODE_API_MODULE(criu_ns, Init)
