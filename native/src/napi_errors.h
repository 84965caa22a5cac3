// Engine failures as JavaScript Errors that carry their data: `code` (as
// packages/core/src/errors.ts's UserErrorCode, or 'internal'), `field` (the
// job field at fault, when one is) and, for 'too-large', the `needed` and
// `available` bytes. JavaScript decides by these, never by the message.
#pragma once

#include <napi.h>

#include <exception>
#include <string>

namespace nst::napi_errors {

// A failure captured where it was thrown (on any thread), to be turned into a
// JS Error on the JS thread.
struct Failure {
  std::string message;
  std::string code = "internal";
  std::string field;
  bool too_large = false;
  double needed = 0, available = 0;
};

// nst::Error keeps its data; anything else (oneDNN's errors, bad_alloc) is internal.
Failure capture(const std::exception& e);

Napi::Error to_js(Napi::Env env, const Failure& failure);

// Runs f; an exception from the engine becomes the JS Error above (JS errors
// thrown by the argument checks pass through).
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw to_js(env, capture(e));
  }
}

}  // namespace nst::napi_errors
