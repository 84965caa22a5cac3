// The temporal loss of video frames (Ruder, Dosovitskiy and Brox, "Artistic
// style transfer for videos", 2016) and its gradient, on the images x
// (batch, h, w, 3), against per item a target image w (the previous stylised
// frame warped by the optical flow, same layout) and a per-pixel weight c
// (batch, h, w; 0 at occlusions and motion boundaries, else up to 1):
//   loss[b][temporal] += J_temporal = (1/D) sum_p c(p) sum_ch (x - w)^2,  D = h w 3   (unweighted)
//   g += grad_coef * d J_temporal / d x = grad_coef * 2 c (x - w) / D
// A pixel-space term like TV (tv_loss.cuh): one pass over the image, each
// pixel reads its own three channels and weight.
//
// Precision: the gradient is the same float products as the reference, in
// another association (the kernel may fuse the multiply-add): 1e-6 relative on
// images in pixel levels; the loss sums the same float squares in double, in
// another order: 1e-9 relative.
#pragma once

#include <cstddef>

#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kTemporalGradientTolerance = 1e-6;
inline constexpr double kTemporalLossTolerance = 1e-9;

void launch_temporal_loss_grad(const float* x, const float* target, const float* weights, float* g, int batch, int h,
                               int w, float grad_coef, double* loss, cudaStream_t stream);

inline void temporal_loss_grad_cpu(const float* x, const float* target, const float* weights, float* g, int batch,
                                   int h, int w, float grad_coef, double* loss) {
  const size_t pixels = size_t(h) * w;
  const float inv_d = 1.f / float(pixels * 3);
  const float coef = 2.f * grad_coef * inv_d;
  for (int b = 0; b < batch; b++) {
    const float* xb = x + size_t(b) * pixels * 3;
    const float* tb = target + size_t(b) * pixels * 3;
    const float* cb = weights + size_t(b) * pixels;
    float* gb = g + size_t(b) * pixels * 3;
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (size_t p = 0; p < pixels; p++) {
      const float c = cb[p];
      if (c == 0.f) continue;
      for (int ch = 0; ch < 3; ch++) {
        const float d = xb[p * 3 + ch] - tb[p * 3 + ch];
        sum += double(c) * (double(d) * d);
        gb[p * 3 + ch] += coef * (c * d);
      }
    }
    loss[b * kLossSlots + kTemporalSlot] += sum / double(pixels * 3);
  }
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void temporal_loss_grad_kernel(const float* x, const float* target, const float* weights, float* g,
                                          Index pixels, float coef, double inv_d, double* loss) {
  const Index base = Index(blockIdx.y) * pixels;
  double sq = 0;
  for (Index p = global_index<Index>(); p < pixels; p += global_stride<Index>()) {
    const float c = weights[base + p];
    if (c == 0.f) continue;
    for (int ch = 0; ch < 3; ch++) {
      const Index i = (base + p) * 3 + ch;
      const float d = x[i] - target[i];
      sq += double(c) * (double(d) * d);
      g[i] += coef * (c * d);
    }
  }
  add_loss(&loss[blockIdx.y * kLossSlots + kTemporalSlot], inv_d * block_sum(sq));
}

}  // namespace

void launch_temporal_loss_grad(const float* x, const float* target, const float* weights, float* g, int batch, int h,
                               int w, float grad_coef, double* loss, cudaStream_t stream) {
  const size_t pixels = size_t(h) * w;
  dim3 grid(grid_for(pixels, 1024), static_cast<unsigned int>(batch));
  const float coef = 2.f * grad_coef * (1.f / float(pixels * 3));
  const double inv_d = 1.0 / double(pixels * 3);
  if (use_32bit(size_t(batch) * pixels * 3)) {
    NST_LAUNCH(temporal_loss_grad_kernel<uint32_t>, grid, kThreads, 0, stream)
    (x, target, weights, g, uint32_t(pixels), coef, inv_d, loss);
  } else {
    NST_LAUNCH(temporal_loss_grad_kernel<size_t>, grid, kThreads, 0, stream)
    (x, target, weights, g, pixels, coef, inv_d, loss);
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
