// The Gram matrices of the CPU engine's style terms. A "layer" here is one
// batch item's activation seen as an N x C row-major matrix A (N = H * W
// pixels, C channels). The element-wise work around them (the Gram
// difference, the content term with the ReLU's backward, TV, Adam) is the
// kernel families' CPU references (native/src/kernels), which the CUDA
// engine's kernels are tested against.
#pragma once

#include <dnnl.hpp>

#include <cstddef>
#include <vector>

#include "kernels/bf16.h"

namespace nst::cpu {

// fp32, on oneDNN's sgemm:
// gram = scale * A^T A + accumulate * gram   (C x C; accumulate is 0 or 1).
void gram(const float* a, int n, int c, float scale, float accumulate, float* out);

// grad += A d: the style gradient of one layer, d = coef * (Gram / N - target)
// (C x C) as style_gram_diff leaves it.
void add_gram_gradient(const float* a, int n, int c, const float* d, float* grad);

// The same two for bf16 activations (the bf16 precision), on oneDNN's bf16
// matmul (AMX or AVX512-BF16 where the processor has them), for one shape:
// - the Gram matrix is float32: the products of two bf16 numbers are exact
//   in float32 and the sums are float32's, so it is A^T A of the activations
//   as they are, only summed in another order than sgemm's;
// - the gradient is float32: A d accumulates in float32 and d (float32)
//   enters as the sum of two bf16 matrices, d = hi + lo with hi = bf16(d)
//   and lo = bf16(d - hi), so d is carried to 2^-17 relative (16
//   significant bits instead of float32's 24; the activations themselves
//   have 8).
class Bf16Gram {
 public:
  Bf16Gram(const dnnl::engine& engine, int n, int c);
  // The bytes it allocates (the split of d, the primitives' scratchpad).
  static size_t buffer_bytes(const dnnl::engine& engine, int n, int c);
  static constexpr int kPrimitives = 2;

  // out = scale * A^T A + accumulate * out   (accumulate 0 or 1)
  void gram(const kernels::bf16_bits* a, float scale, float accumulate, float* out);
  // grad += A d
  void add_gradient(const kernels::bf16_bits* a, const float* d, float* grad);

 private:
  struct Plan;
  static Plan plan(const dnnl::engine& engine, int n, int c);
  dnnl::engine engine_;
  dnnl::stream stream_;
  int c_;
  dnnl::matmul gram_, gradient_;
  dnnl::memory::desc a_transposed_, a_, gram_out_, d_desc_, grad_desc_;
  dnnl::memory d_hi_, d_lo_, scratchpad_;
  std::vector<float> raw_;  // A^T A before scaling
};

}  // namespace nst::cpu
