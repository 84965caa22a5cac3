// Backward through the ReLU of a conv layer, with the content loss of that
// layer fused when it has one. Per batch item b (`per_item` floats each):
//   g = (g + grad_coef * (a - target)) * (a > 0)        (target may be null)
//   loss[b][content] += loss_coef * sum (a - target)^2  (when target)
// `a` is the layer's post-ReLU output, whose positivity is the ReLU's mask;
// g holds d J / d a on entry and d J / d (conv output) on return.
//
// Precision: float differences and updates as the reference (a GPU may fuse
// g + grad_coef * d into one multiply-add: 1e-6 relative); the loss sums the
// same float squares in double, in another order: 1e-9 relative. Without a
// target the mask alone is exact.
#pragma once

#include <cstddef>

#include "kernels/bf16.h"
#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kReluBackwardTolerance = 1e-6;
inline constexpr double kContentLossTolerance = 1e-9;

// per_item a multiple of 4 (the kernel reads float4s).
void launch_relu_backward(float* g, const float* a, const float* target, float grad_coef, float loss_coef, double* loss,
                          size_t per_item, int batch, cudaStream_t stream);

inline void relu_backward_cpu(float* g, const float* a, const float* target, float grad_coef, float loss_coef,
                              double* loss, size_t per_item, int batch) {
  for (int b = 0; b < batch; b++) {
    float* gb = g + b * per_item;
    const float* ab = a + b * per_item;
    if (target) {
      const float* tb = target + b * per_item;
      double sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
      for (size_t i = 0; i < per_item; i++) {
        const float d = ab[i] - tb[i];
        sum += double(d) * d;
        gb[i] = ab[i] > 0.f ? gb[i] + grad_coef * d : 0.f;
      }
      loss[b * kLossSlots + kContentSlot] += double(loss_coef) * sum;
    } else {
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < per_item; i++) gb[i] = ab[i] > 0.f ? gb[i] : 0.f;
    }
  }
}

// The same with bf16 activations (the cpu engine's bf16 precision): `a` and
// `target` are bfloat16, widened exactly; g (d J / d a) stays float32 and is
// not changed; the result, d J / d (conv output), is written to `out`
// rounded to bfloat16 (for the bf16 convolution's backward-data). The float
// arithmetic is the reference's above on the widened values, so `out` is
// relu_backward_cpu's result rounded once; the loss is the same sum.
inline void relu_backward_bf16_cpu(const float* g, const bf16_bits* a, const bf16_bits* target, float grad_coef,
                                   float loss_coef, double* loss, bf16_bits* out, size_t per_item, int batch) {
  for (int b = 0; b < batch; b++) {
    const float* gb = g + b * per_item;
    const bf16_bits* ab = a + b * per_item;
    bf16_bits* ob = out + b * per_item;
    if (target) {
      const bf16_bits* tb = target + b * per_item;
      double sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
      for (size_t i = 0; i < per_item; i++) {
        const float av = bf16_to_float(ab[i]);
        const float d = av - bf16_to_float(tb[i]);
        const float gv = gb[i] + grad_coef * d;
        sum += double(d) * d;
        ob[i] = float_to_bf16(av > 0.f ? gv : 0.f);
      }
      loss[b * kLossSlots + kContentSlot] += double(loss_coef) * sum;
    } else {
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < per_item; i++) {
        const float gv = gb[i];
        ob[i] = float_to_bf16(bf16_to_float(ab[i]) > 0.f ? gv : 0.f);
      }
    }
  }
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void relu_backward_kernel(float4* g, const float4* a, const float4* target, float grad_coef, float loss_coef,
                                     double* loss, Index per_item4) {
  const Index base = Index(blockIdx.y) * per_item4;
  double sq = 0;
  for (Index i = global_index<Index>(); i < per_item4; i += global_stride<Index>()) {
    float4 av = a[base + i], gv = g[base + i];
    if (target) {
      float4 diff = av - target[base + i];
      sq += sum_squares(diff);
      gv = gv + grad_coef * diff;
    }
    g[base + i] = mask_positive(gv, av);
  }
  if (target) add_loss(&loss[blockIdx.y * kLossSlots + kContentSlot], loss_coef * block_sum(sq));
}

}  // namespace

void launch_relu_backward(float* g, const float* a, const float* target, float grad_coef, float loss_coef, double* loss,
                          size_t per_item, int batch, cudaStream_t stream) {
  dim3 grid(grid_for(per_item / 4, 1024), static_cast<unsigned int>(batch));
  auto g4 = reinterpret_cast<float4*>(g);
  auto a4 = reinterpret_cast<const float4*>(a);
  auto t4 = reinterpret_cast<const float4*>(target);
  if (use_32bit(per_item / 4 * batch)) {
    NST_LAUNCH(relu_backward_kernel<uint32_t>, grid, kThreads, 0, stream)
    (g4, a4, t4, grad_coef, loss_coef, loss, uint32_t(per_item / 4));
  } else {
    NST_LAUNCH(relu_backward_kernel<size_t>, grid, kThreads, 0, stream)
    (g4, a4, t4, grad_coef, loss_coef, loss, per_item / 4);
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
