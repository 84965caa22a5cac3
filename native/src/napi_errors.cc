#include "napi_errors.h"

#include "engine.h"

namespace nst::napi_errors {

Failure capture(const std::exception& e) {
  Failure f;
  f.message = e.what();
  if (const auto* error = dynamic_cast<const Error*>(&e)) {
    f.code = error_code_name(error->code);
    f.field = error->field;
    f.too_large = error->code == ErrorCode::TooLarge;
    f.needed = error->needed;
    f.available = error->available;
  }
  return f;
}

Napi::Error to_js(Napi::Env env, const Failure& failure) {
  Napi::Error error = Napi::Error::New(env, failure.message);
  error.Set("code", failure.code);
  if (!failure.field.empty()) error.Set("field", failure.field);
  if (failure.too_large) {
    error.Set("needed", failure.needed);  // infinity: beyond what the engine can describe
    error.Set("available", failure.available);
  }
  return error;
}

}  // namespace nst::napi_errors
