// Total variation of the images x (batch, h, w, 3) and its gradient:
//   loss[b][tv] += J_tv = sum (x[i+1,j] - x[i,j])^2 + (x[i,j+1] - x[i,j])^2   (unweighted)
//   g += grad_coef * d J_tv / d x
// Each pixel gathers its gradient from its four neighbours:
//   d J_tv / d x[i,j] = 2 (up - down + left - right), with up = x[i,j] - x[i-1,j],
//   down = x[i+1,j] - x[i,j], and likewise across (missing neighbours count 0).
//
// Precision: the kernel adds the four terms in another order than the
// reference (and may fuse multiply-adds): 1e-5 relative on the gradient of
// images in pixel levels; the loss sums the same float squares in double, in
// another order: 1e-9 relative.
#pragma once

#include <cstddef>

#include "kernels/common.h"
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kTvGradientTolerance = 1e-5;
inline constexpr double kTvLossTolerance = 1e-9;

void launch_tv_loss_grad(const float* x, float* g, int batch, int h, int w, float grad_coef, double* loss,
                         cudaStream_t stream);

inline void tv_loss_grad_cpu(const float* x, float* g, int batch, int h, int w, float grad_coef, double* loss) {
  const int row = w * 3;
  for (int b = 0; b < batch; b++) {
    const float* xb = x + size_t(b) * h * row;
    float* gb = g + size_t(b) * h * row;
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int i = 0; i < h; i++) {
      const float* xr = xb + size_t(i) * row;
      float* gr = gb + size_t(i) * row;
      for (int j = 0; j < row; j++) {
        const float down = i + 1 < h ? xr[j + row] - xr[j] : 0.f;
        const float right = j + 3 < row ? xr[j + 3] - xr[j] : 0.f;
        const float up = i > 0 ? xr[j] - xr[j - row] : 0.f;
        const float left = j >= 3 ? xr[j] - xr[j - 3] : 0.f;
        sum += double(down) * down + double(right) * right;
        gr[j] += 2.f * grad_coef * (up - down + left - right);
      }
    }
    loss[b * kLossSlots + kTvSlot] += sum;
  }
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void tv_loss_grad_kernel(const float* x, float* g, int h, int w, float grad_coef, double* loss) {
  const Index base = Index(blockIdx.y) * h * w * 3;
  const Index pixels = Index(h) * w;
  double sq = 0;
  for (Index p = global_index<Index>(); p < pixels; p += global_stride<Index>()) {
    int i = int(p / Index(w)), j = int(p % Index(w));
    for (int c = 0; c < 3; c++) {
      auto at = [&](int ii, int jj) { return x[base + (Index(ii) * w + jj) * 3 + c]; };
      float v = at(i, j), grad = 0.f;
      if (i + 1 < h) {
        float d = at(i + 1, j) - v;
        sq += double(d) * d;
        grad -= 2.f * d;
      }
      if (j + 1 < w) {
        float d = at(i, j + 1) - v;
        sq += double(d) * d;
        grad -= 2.f * d;
      }
      if (i > 0) grad += 2.f * (v - at(i - 1, j));
      if (j > 0) grad += 2.f * (v - at(i, j - 1));
      g[base + p * 3 + c] += grad_coef * grad;
    }
  }
  add_loss(&loss[blockIdx.y * kLossSlots + kTvSlot], block_sum(sq));
}

}  // namespace

void launch_tv_loss_grad(const float* x, float* g, int batch, int h, int w, float grad_coef, double* loss,
                         cudaStream_t stream) {
  dim3 grid(grid_for(size_t(h) * w, 1024), static_cast<unsigned int>(batch));
  if (use_32bit(size_t(batch) * h * w * 3)) {
    NST_LAUNCH(tv_loss_grad_kernel<uint32_t>, grid, kThreads, 0, stream)(x, g, h, w, grad_coef, loss);
  } else {
    NST_LAUNCH(tv_loss_grad_kernel<size_t>, grid, kThreads, 0, stream)(x, g, h, w, grad_coef, loss);
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
