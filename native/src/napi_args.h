// Reading arguments from JavaScript: each helper checks the type (and range)
// of one value and throws a JS TypeError or RangeError naming it (`what`), so
// that bad input never reaches the engines as a bad pointer.
#pragma once

#include <napi.h>

#include <string>

namespace nst::napi_args {

[[noreturn]] void type_error(Napi::Env env, const std::string& message);
[[noreturn]] void range_error(Napi::Env env, const std::string& message);

Napi::Object object_arg(Napi::Env env, const Napi::Value& v, const std::string& what);
Napi::Array array_arg(Napi::Env env, const Napi::Value& v, const std::string& what);
std::string string_arg(Napi::Env env, const Napi::Value& v, const std::string& what);

// o[key], a finite number.
double number_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what);
// o[key] when present, else `fallback`.
double optional_number(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what, double fallback);
// o[key], an integer in min..max.
int int_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what, int min, int max);
// o[key], any 32-bit integer (its range is checked where its meaning is known).
int int_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what);

// A Float32Array of exactly `length` values (length < 0: any length).
Napi::Float32Array floats_arg(Napi::Env env, const Napi::Value& v, const std::string& what, long long length);

}  // namespace nst::napi_args
