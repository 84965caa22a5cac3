// The style term of one layer on its Gram matrices (the Grams themselves come
// from cuBLAS on the GPU, oneDNN's sgemm on the CPU). Per batch item b, for
// c x c Grams, with D = gram - target:
//   loss[b][style] += loss_coef * sum D^2
//   gram <- grad_coef * D   (in place: the factor of the gradient D A)
//
// Precision: float differences and products as the reference: 1e-6 relative;
// the loss sums the same float squares in double, in another order: 1e-9
// relative.
#pragma once

#include <cstddef>

#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kStyleGramDiffTolerance = 1e-6;
inline constexpr double kStyleLossTolerance = 1e-9;

void launch_style_gram_diff(float* gram, const float* target, int c, int batch, float loss_coef, float grad_coef,
                            double* loss, cudaStream_t stream);

inline void style_gram_diff_cpu(float* gram, const float* target, int c, int batch, float loss_coef, float grad_coef,
                                double* loss) {
  const size_t per_item = size_t(c) * c;
  for (int b = 0; b < batch; b++) {
    float* gb = gram + b * per_item;
    const float* tb = target + b * per_item;
    double sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < per_item; i++) {
      const float d = gb[i] - tb[i];
      sum += double(d) * d;
      gb[i] = grad_coef * d;
    }
    loss[b * kLossSlots + kStyleSlot] += double(loss_coef) * sum;
  }
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void style_gram_diff_kernel(float* gram, const float* target, Index per_item, float loss_coef,
                                       float grad_coef, double* loss) {
  const Index base = Index(blockIdx.y) * per_item;
  double sq = 0;
  for (Index i = global_index<Index>(); i < per_item; i += global_stride<Index>()) {
    float d = gram[base + i] - target[base + i];
    sq += double(d) * d;
    gram[base + i] = grad_coef * d;
  }
  add_loss(&loss[blockIdx.y * kLossSlots + kStyleSlot], loss_coef * block_sum(sq));
}

}  // namespace

void launch_style_gram_diff(float* gram, const float* target, int c, int batch, float loss_coef, float grad_coef,
                            double* loss, cudaStream_t stream) {
  size_t per_item = size_t(c) * c;
  dim3 grid(grid_for(per_item, 256), static_cast<unsigned int>(batch));
  if (use_32bit(per_item * batch)) {
    NST_LAUNCH(style_gram_diff_kernel<uint32_t>, grid, kThreads, 0, stream)
    (gram, target, uint32_t(per_item), loss_coef, grad_coef, loss);
  } else {
    NST_LAUNCH(style_gram_diff_kernel<size_t>, grid, kThreads, 0, stream)
    (gram, target, per_item, loss_coef, grad_coef, loss);
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
