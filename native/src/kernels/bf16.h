// bfloat16 on the host: the top 16 bits of a float32 (8 exponent bits, 7
// stored mantissa bits), as oneDNN stores it. Widening is exact; narrowing
// rounds to nearest even (oneDNN's rounding), keeps infinities, and keeps a
// NaN a NaN. Branch-free, so that loops over arrays vectorise.
#pragma once

#include <cstdint>
#include <cstring>

namespace nst::kernels {

using bf16_bits = std::uint16_t;

inline std::uint32_t float_bits(float f) {
#if defined(__GNUC__) && !defined(__CUDACC__)
  return __builtin_bit_cast(std::uint32_t, f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

inline float bits_float(std::uint32_t u) {
#if defined(__GNUC__) && !defined(__CUDACC__)
  return __builtin_bit_cast(float, u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

inline float bf16_to_float(bf16_bits h) { return bits_float(std::uint32_t(h) << 16); }

inline bf16_bits float_to_bf16(float f) {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t quiet_nan = (u >> 16) | 0x40u;  // a NaN stays a NaN (rounding could carry it into infinity)
  return bf16_bits((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

}  // namespace nst::kernels
