#include "napi_args.h"

#include <cmath>
#include <cstdint>

namespace nst::napi_args {

void type_error(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

void range_error(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }

Napi::Object object_arg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsObject() || v.IsArray()) type_error(env, what + " must be an object");
  return v.As<Napi::Object>();
}

Napi::Array array_arg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) type_error(env, what + " must be an array");
  return v.As<Napi::Array>();
}

std::string string_arg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) type_error(env, what + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double number_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) type_error(env, what + "." + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) range_error(env, what + "." + key + " must be finite");
  return d;
}

double optional_number(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what,
                       double fallback) {
  return o.Get(key).IsUndefined() ? fallback : number_field(env, o, key, what);
}

int int_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what, int min, int max) {
  double d = number_field(env, o, key, what);
  if (d != std::floor(d) || d < min || d > max) {
    range_error(env, what + "." + key + " must be an integer in " + std::to_string(min) + ".." + std::to_string(max) +
                         ", got " + Napi::Number::New(env, d).ToString().Utf8Value());
  }
  return int(d);
}

int int_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& what) {
  double d = number_field(env, o, key, what);
  if (d != std::floor(d) || d < INT32_MIN || d > INT32_MAX) {
    range_error(
        env, what + "." + key + " must be a 32-bit integer, got " + Napi::Number::New(env, d).ToString().Utf8Value());
  }
  return int(d);
}

Napi::Float32Array floats_arg(Napi::Env env, const Napi::Value& v, const std::string& what, long long length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    type_error(env, what + " must be a Float32Array");
  }
  auto a = v.As<Napi::Float32Array>();
  if (length >= 0 && static_cast<long long>(a.ElementLength()) != length) {
    range_error(env,
                what + " must hold " + std::to_string(length) + " values, got " + std::to_string(a.ElementLength()));
  }
  return a;
}

}  // namespace nst::napi_args
