// The Gram matrices of the CPU engine's style terms, on oneDNN's sgemm. A
// "layer" here is one batch item's activation seen as an N x C row-major
// matrix A (N = H * W pixels, C channels). The element-wise work around them
// (the Gram difference, the content term with the ReLU's backward, TV, Adam)
// is the kernel families' CPU references (native/src/kernels), which the
// CUDA engine's kernels are tested against.
#pragma once

#include <cstddef>

#include "kernels/bf16.h"

namespace nst::cpu {

// gram = scale * A^T A + accumulate * gram   (C x C; accumulate is 0 or 1).
void gram(const float* a, int n, int c, float scale, float accumulate, float* out);

// grad += A d: the style gradient of one layer, d = coef * (Gram / N - target)
// (C x C) as style_gram_diff leaves it.
void add_gram_gradient(const float* a, int n, int c, const float* d, float* grad);

// The same two on bf16 activations (the bf16 precision): A is widened to
// float32 (exactly) a block of rows at a time in `scratch`
// (kGramScratchFloats floats), and each block goes through the same float32
// sgemm: the Gram matrices and the style gradient stay float32 (only the
// activations they read were rounded, by the convolutions).
inline constexpr size_t kGramScratchFloats = size_t(1) << 20;
void gram(const kernels::bf16_bits* a, int n, int c, float scale, float accumulate, float* out, float* scratch);
void add_gram_gradient(const kernels::bf16_bits* a, int n, int c, const float* d, float* grad, float* scratch);

}  // namespace nst::cpu
