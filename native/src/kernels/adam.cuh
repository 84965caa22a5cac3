// TF1 Adam (packages/core/src/adam.ts), in place, with the step size taken
// from a list in device memory, so that the launch can sit in a CUDA graph
// replayed with new step sizes:
//   lr = step_sizes[*step_index]
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   x -= lr m / (sqrt(v) + eps)
// and advance_step: ++*step_index (one thread; after the update that used it).
// 1 - beta is formed in double and rounded once: 1.f - 0.999f is off by 5e-5
// relative.
//
// Precision: float32 arithmetic throughout, as TensorFlow's own kernel and
// the reference (a GPU may fuse the multiply-adds): 1e-6 relative.
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kAdamTolerance = 1e-6;

void launch_adam(float* x, float* m, float* v, const float* g, size_t n, double beta1, double beta2, double eps,
                 const float* step_sizes, const int* step_index, cudaStream_t stream);
void launch_advance_step(int* step_index, cudaStream_t stream);

inline void adam_cpu(float* x, float* m, float* v, const float* g, size_t n, double beta1, double beta2, double eps,
                     const float* step_sizes, const int* step_index) {
  const float lr = step_sizes[*step_index];
  const float b1 = float(beta1), omb1 = float(1.0 - beta1), b2 = float(beta2), omb2 = float(1.0 - beta2);
  const float e = float(eps);
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    const float mi = b1 * m[i] + omb1 * g[i];
    const float vi = b2 * v[i] + omb2 * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    x[i] -= lr * mi / (std::sqrt(vi) + e);
  }
}

inline void advance_step_cpu(int* step_index) { ++*step_index; }

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void adam_kernel(float* x, float* m, float* v, const float* g, Index n, float beta1, float one_minus_beta1,
                            float beta2, float one_minus_beta2, float eps, const float* step_sizes,
                            const int* step_index) {
  const float lr = step_sizes[*step_index];
  for (Index i = global_index<Index>(); i < n; i += global_stride<Index>()) {
    float gi = g[i];
    float mi = beta1 * m[i] + one_minus_beta1 * gi;
    float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    x[i] -= lr * mi / (sqrtf(vi) + eps);
  }
}

__global__ void advance_step_kernel(int* step_index) { *step_index += 1; }

}  // namespace

void launch_adam(float* x, float* m, float* v, const float* g, size_t n, double beta1, double beta2, double eps,
                 const float* step_sizes, const int* step_index, cudaStream_t stream) {
  const float b1 = float(beta1), omb1 = float(1.0 - beta1), b2 = float(beta2), omb2 = float(1.0 - beta2);
  if (use_32bit(n)) {
    NST_LAUNCH_INDEPENDENT(adam_kernel<uint32_t>, grid_for(n), kThreads, 0, stream)
    (x, m, v, g, uint32_t(n), b1, omb1, b2, omb2, float(eps), step_sizes, step_index);
  } else {
    NST_LAUNCH_INDEPENDENT(adam_kernel<size_t>, grid_for(n), kThreads, 0, stream)
    (x, m, v, g, n, b1, omb1, b2, omb2, float(eps), step_sizes, step_index);
  }
}

void launch_advance_step(int* step_index, cudaStream_t stream) {
  NST_LAUNCH_INDEPENDENT(advance_step_kernel, 1, 1, 0, stream)(step_index);
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
