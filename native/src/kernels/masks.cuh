// Spatial control (packages/core/src/masks.ts): the element-wise work of the
// masked losses, one batch item at a time (items have their own masks). A
// layer's activation is an N x C row-major matrix A (N positions, C
// channels) and a mask m holds one weight per position.
//
// mask_rows: out = A o m (each row scaled by its weight); out may be A. The
//   guided Gram is Gram(A o m) / sum m, and its gradient m^2 A D / (C^2 sum m)
//   is ((A o m) o m) D with the coefficient in D: masking the scratch once
//   more in place, one N x C scratch serves both.
// masked_content: the content term weighted per position (the content mask):
//   g += grad_coef * m_p (a - target),  loss[b][content] += loss_coef * sum_p m_p sum_ch (a - target)^2
//   per batch item b (`positions` x `channels` floats each, m `positions`
//   per item), before the ReLU's backward (relu_backward.cuh without target).
//
// Precision: mask_rows is the reference's float products (exact twin); the
// content gradient is the same float products in another association (a GPU
// may fuse the multiply-add): 1e-6 relative; the loss sums the same float
// products in double, in another order: 1e-9 relative.
#pragma once

#include <cstddef>

#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kMaskRowsTolerance = 0;
inline constexpr double kMaskedContentTolerance = 1e-6;
inline constexpr double kMaskedContentLossTolerance = 1e-9;

void launch_mask_rows(float* out, const float* a, const float* m, size_t positions, int channels, cudaStream_t stream);
void launch_masked_content(float* g, const float* a, const float* target, const float* m, size_t positions,
                           int channels, int batch, float grad_coef, float loss_coef, double* loss,
                           cudaStream_t stream);

inline void mask_rows_cpu(float* out, const float* a, const float* m, size_t positions, int channels) {
#pragma omp parallel for schedule(static)
  for (size_t p = 0; p < positions; p++) {
    const float w = m[p];
    for (int j = 0; j < channels; j++) out[p * channels + j] = a[p * channels + j] * w;
  }
}

inline void masked_content_cpu(float* g, const float* a, const float* target, const float* m, size_t positions,
                               int channels, int batch, float grad_coef, float loss_coef, double* loss) {
  const size_t per_item = positions * channels;
  for (int b = 0; b < batch; b++) {
    const float* ab = a + b * per_item;
    const float* tb = target + b * per_item;
    const float* mb = m + b * positions;
    float* gb = g + b * per_item;
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (size_t p = 0; p < positions; p++) {
      const float w = mb[p];
      if (w == 0.f) continue;
      for (int j = 0; j < channels; j++) {
        const size_t i = p * channels + j;
        const float d = ab[i] - tb[i];
        sum += double(w) * (double(d) * d);
        gb[i] += grad_coef * (w * d);
      }
    }
    loss[b * kLossSlots + kContentSlot] += double(loss_coef) * sum;
  }
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void mask_rows_kernel(float* out, const float* a, const float* m, Index elements, int channels) {
  for (Index i = global_index<Index>(); i < elements; i += global_stride<Index>())
    out[i] = a[i] * m[i / Index(channels)];
}

template <typename Index>
__global__ void masked_content_kernel(float* g, const float* a, const float* target, const float* m, Index per_item,
                                      int channels, float grad_coef, float loss_coef, double* loss) {
  const Index base = Index(blockIdx.y) * per_item;
  const Index mask_base = Index(blockIdx.y) * (per_item / Index(channels));
  double sq = 0;
  for (Index i = global_index<Index>(); i < per_item; i += global_stride<Index>()) {
    const float w = m[mask_base + i / Index(channels)];
    if (w == 0.f) continue;
    const float d = a[base + i] - target[base + i];
    sq += double(w) * (double(d) * d);
    g[base + i] += grad_coef * (w * d);
  }
  add_loss(&loss[blockIdx.y * kLossSlots + kContentSlot], loss_coef * block_sum(sq));
}

}  // namespace

void launch_mask_rows(float* out, const float* a, const float* m, size_t positions, int channels, cudaStream_t stream) {
  const size_t elements = positions * channels;
  if (use_32bit(elements)) {
    NST_LAUNCH(mask_rows_kernel<uint32_t>, grid_for(elements), kThreads, 0, stream)
    (out, a, m, uint32_t(elements), channels);
  } else {
    NST_LAUNCH(mask_rows_kernel<size_t>, grid_for(elements), kThreads, 0, stream)
    (out, a, m, elements, channels);
  }
}

void launch_masked_content(float* g, const float* a, const float* target, const float* m, size_t positions,
                           int channels, int batch, float grad_coef, float loss_coef, double* loss,
                           cudaStream_t stream) {
  const size_t per_item = positions * channels;
  dim3 grid(grid_for(per_item, 1024), static_cast<unsigned int>(batch));
  if (use_32bit(per_item * batch)) {
    NST_LAUNCH(masked_content_kernel<uint32_t>, grid, kThreads, 0, stream)
    (g, a, target, m, uint32_t(per_item), channels, grad_coef, loss_coef, loss);
  } else {
    NST_LAUNCH(masked_content_kernel<size_t>, grid, kThreads, 0, stream)
    (g, a, target, m, per_item, channels, grad_coef, loss_coef, loss);
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
