// The ReLU's mask of a layer the loss does not read, one bit per element: all
// that the backward pass needs of such a layer. The weights are frozen, so no
// convolution's backward reads its input (backward-data reads the weights and
// the output's gradient), and avg pooling's backward reads nothing; only the
// ReLU's backward reads the activation, and only its sign. So the cpu engine
// keeps 1 bit of such a layer instead of its 32 (vgg_net.h, LayerReads).
//
// Exact: relu_mask_backward gives relu_backward_cpu's result without a target
// (g where a > 0, else 0) bit for bit, and relu_mask_backward_bf16 that result
// rounded to bf16, as relu_backward_bf16_cpu does.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/bf16.h"

namespace nst::cpu {

// Words of a mask of n elements: bit i % 32 of word i / 32 is element i's.
inline size_t relu_mask_words(size_t n) { return (n + 31) / 32; }

// mask = (a > 0) per element; a is float32 or bf16 (positive: sign bit clear, not zero).
template <typename T>
void pack_relu_mask(const T* a, size_t n, uint32_t* mask) {
  auto positive = [](T v) {
    if constexpr (sizeof(T) == sizeof(kernels::bf16_bits))
      return kernels::bf16_to_float(v) > 0.f;
    else
      return v > 0.f;
  };
  const size_t words = relu_mask_words(n), full = n / 32;
#pragma omp parallel for schedule(static)
  for (size_t w = 0; w < full; w++) {
    uint32_t word = 0;
    for (unsigned j = 0; j < 32; j++) word |= uint32_t(positive(a[w * 32 + j])) << j;
    mask[w] = word;
  }
  if (words > full) {
    uint32_t word = 0;
    for (size_t i = full * 32; i < n; i++) word |= uint32_t(positive(a[i])) << (i - full * 32);
    mask[full] = word;
  }
}

// g = mask ? g : 0, in place (d J / d activation -> d J / d conv output).
inline void relu_mask_backward(float* g, const uint32_t* mask, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t w = 0; w < relu_mask_words(n); w++) {
    const size_t end = w * 32 + 32 < n ? w * 32 + 32 : n;
    for (size_t i = w * 32; i < end; i++) g[i] = (mask[w] >> (i - w * 32)) & 1u ? g[i] : 0.f;
  }
}

// out = bf16(mask ? g : 0); g unchanged (the bf16 convolution's diff_dst).
inline void relu_mask_backward_bf16(const float* g, const uint32_t* mask, kernels::bf16_bits* out, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t w = 0; w < relu_mask_words(n); w++) {
    const size_t end = w * 32 + 32 < n ? w * 32 + 32 : n;
    for (size_t i = w * 32; i < end; i++) out[i] = kernels::float_to_bf16((mask[w] >> (i - w * 32)) & 1u ? g[i] : 0.f);
  }
}

}  // namespace nst::cpu
