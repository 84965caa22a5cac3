// Bias and ReLU after a convolution (cuDNN's convolution has no bias):
//   y = max(y + bias[channel], 0)
// for an NHWC map of `count` floats with `channels` channels.
//
// Precision: one float addition and a maximum per element, in the same order
// as the reference: equal up to the rounding of the addition, 1e-7 relative.
#pragma once

#include <algorithm>
#include <cstddef>

#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kBiasReluTolerance = 1e-7;

// count and channels multiples of 4 (the kernel reads float4s).
void launch_bias_relu(float* y, const float* bias, size_t count, int channels, cudaStream_t stream);

inline void bias_relu_cpu(float* y, const float* bias, size_t count, int channels) {
  for (size_t i = 0; i < count; i++) y[i] = std::max(y[i] + bias[i % size_t(channels)], 0.f);
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void bias_relu_kernel(float4* y, const float4* bias, Index count4, Index channels4) {
  for (Index i = global_index<Index>(); i < count4; i += global_stride<Index>()) {
    float4 v = y[i] + bias[i % channels4];
    y[i] = fmax4(v, make_float4(0.f, 0.f, 0.f, 0.f));
  }
}

}  // namespace

void launch_bias_relu(float* y, const float* bias, size_t count, int channels, cudaStream_t stream) {
  auto y4 = reinterpret_cast<float4*>(y);
  auto bias4 = reinterpret_cast<const float4*>(bias);
  if (use_32bit(count / 4)) {
    NST_LAUNCH_INDEPENDENT(bias_relu_kernel<uint32_t>, grid_for(count / 4), kThreads, 0, stream)
    (y4, bias4, uint32_t(count / 4), uint32_t(channels / 4));
  } else {
    NST_LAUNCH_INDEPENDENT(bias_relu_kernel<size_t>, grid_for(count / 4), kThreads, 0, stream)
    (y4, bias4, count / 4, size_t(channels / 4));
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
