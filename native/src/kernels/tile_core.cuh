// The loss terms of a tile (engine.h's TileSession): on an NHWC map of
// h x w x c (one image), only the positions of the tile's core, the rows
// cy0..cy1-1 and columns cx0..cx1-1, count. Core-sized arrays (`t`, `out`
// of gather) are (cy1 - cy0) x (cx1 - cx0) x c, row-major.
//   mask_core:          out = a on the core, 0 elsewhere (the Gram over the
//                       core and the style gradient A D as one product over
//                       the whole map)
//   gather_core:        out = a's core (the content targets)
//   core_content_loss:  loss += loss_coef * sum_core (a - t)^2
//   core_relu_backward: g = (g + grad_coef * (a - t) [core only]) * (a > 0),
//                       and loss += loss_coef * sum_core (a - t)^2 when loss
//                       is not null
//
// Precision: the copies are exact; the differences and updates as
// relu_backward's (1e-6 relative); the loss sums the same float squares in
// double, in another order: 1e-9 relative.
#pragma once

#include <cstddef>

#include "kernels/common.h"
#include "kernels/pool_math.h"  // NST_HD
#ifdef NST_KERNEL_DEFINITIONS
#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kTileCoreTolerance = 1e-6;
inline constexpr double kTileLossTolerance = 1e-9;

// The core of a tile in a map's positions: rows y0..y1-1, columns x0..x1-1.
struct CoreRect {
  int y0, y1, x0, x1;
  NST_HD bool contains(int y, int x) const { return y >= y0 && y < y1 && x >= x0 && x < x1; }
};

// c a multiple of 4 (the kernels read float4s).
void launch_mask_core(const float* a, float* out, int h, int w, int c, CoreRect core, cudaStream_t stream);
void launch_gather_core(const float* a, float* out, int h, int w, int c, CoreRect core, cudaStream_t stream);
void launch_core_content_loss(const float* a, const float* t, int h, int w, int c, CoreRect core, float loss_coef,
                              double* loss, cudaStream_t stream);
void launch_core_relu_backward(float* g, const float* a, const float* t, int h, int w, int c, CoreRect core,
                               float grad_coef, float loss_coef, double* loss, cudaStream_t stream);

inline void mask_core_cpu(const float* a, float* out, int h, int w, int c, CoreRect core) {
#pragma omp parallel for schedule(static)
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const size_t at = (size_t(y) * w + x) * c;
      const bool in = core.contains(y, x);
      for (int k = 0; k < c; k++) out[at + k] = in ? a[at + k] : 0.f;
    }
}

inline void gather_core_cpu(const float* a, float* out, int w, int c, CoreRect core) {
  const size_t row = size_t(core.x1 - core.x0) * c;
#pragma omp parallel for schedule(static)
  for (int y = core.y0; y < core.y1; y++) {
    const float* from = a + (size_t(y) * w + core.x0) * c;
    float* to = out + size_t(y - core.y0) * row;
    for (size_t i = 0; i < row; i++) to[i] = from[i];
  }
}

inline void core_content_loss_cpu(const float* a, const float* t, int w, int c, CoreRect core, float loss_coef,
                                  double* loss) {
  const size_t row = size_t(core.x1 - core.x0) * c;
  double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (int y = core.y0; y < core.y1; y++) {
    const float* ar = a + (size_t(y) * w + core.x0) * c;
    const float* tr = t + size_t(y - core.y0) * row;
    for (size_t i = 0; i < row; i++) {
      const float d = ar[i] - tr[i];
      sum += double(d) * d;
    }
  }
  *loss += double(loss_coef) * sum;
}

inline void core_relu_backward_cpu(float* g, const float* a, const float* t, int h, int w, int c, CoreRect core,
                                   float grad_coef, float loss_coef, double* loss) {
  const size_t row = size_t(core.x1 - core.x0) * c;
  double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      const size_t at = (size_t(y) * w + x) * c;
      const bool in = t && core.contains(y, x);
      const float* tp = in ? t + size_t(y - core.y0) * row + size_t(x - core.x0) * c : nullptr;
      for (int k = 0; k < c; k++) {
        const float d = in ? a[at + k] - tp[k] : 0.f;
        sum += double(d) * d;
        g[at + k] = a[at + k] > 0.f ? g[at + k] + grad_coef * d : 0.f;
      }
    }
  }
  if (loss) *loss += double(loss_coef) * sum;
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

// Position (y, x) and channel group of float4 index i of an h x w x c4 map.
template <typename Index>
__device__ void position_of(Index i, int w, int c4, int& y, int& x, int& cc) {
  cc = int(i % Index(c4));
  const Index p = i / Index(c4);
  x = int(p % Index(w));
  y = int(p / Index(w));
}

template <typename Index>
__global__ void mask_core_kernel(const float4* a, float4* out, int h, int w, int c4, CoreRect core) {
  const Index total = Index(h) * w * c4;
  for (Index i = global_index<Index>(); i < total; i += global_stride<Index>()) {
    int y, x, cc;
    position_of<Index>(i, w, c4, y, x, cc);
    out[i] = core.contains(y, x) ? a[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

template <typename Index>
__global__ void gather_core_kernel(const float4* a, float4* out, int w, int c4, CoreRect core) {
  const int cw = core.x1 - core.x0;
  const Index total = Index(core.y1 - core.y0) * cw * c4;
  for (Index i = global_index<Index>(); i < total; i += global_stride<Index>()) {
    int y, x, cc;
    position_of<Index>(i, cw, c4, y, x, cc);
    out[i] = a[(Index(y + core.y0) * w + x + core.x0) * c4 + cc];
  }
}

template <typename Index>
__global__ void core_relu_backward_kernel(float4* g, const float4* a, const float4* t, int h, int w, int c4,
                                          CoreRect core, float grad_coef, float loss_coef, double* loss) {
  const Index total = Index(h) * w * c4;
  const int cw = core.x1 - core.x0;
  double sq = 0;
  for (Index i = global_index<Index>(); i < total; i += global_stride<Index>()) {
    int y, x, cc;
    position_of<Index>(i, w, c4, y, x, cc);
    float4 av = a[i];
    float4 gv = g ? g[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    if (t && core.contains(y, x)) {
      float4 diff = av - t[(Index(y - core.y0) * cw + (x - core.x0)) * c4 + cc];
      sq += sum_squares(diff);
      gv = gv + grad_coef * diff;
    }
    if (g) g[i] = mask_positive(gv, av);
  }
  if (loss) add_loss(loss, loss_coef * block_sum(sq));
}

}  // namespace

void launch_mask_core(const float* a, float* out, int h, int w, int c, CoreRect core, cudaStream_t stream) {
  const size_t work = size_t(h) * w * (c / 4);
  auto a4 = reinterpret_cast<const float4*>(a);
  auto out4 = reinterpret_cast<float4*>(out);
  if (use_32bit(work)) {
    NST_LAUNCH_INDEPENDENT(mask_core_kernel<uint32_t>, grid_for(work), kThreads, 0, stream)
    (a4, out4, h, w, c / 4, core);
  } else {
    NST_LAUNCH_INDEPENDENT(mask_core_kernel<size_t>, grid_for(work), kThreads, 0, stream)(a4, out4, h, w, c / 4, core);
  }
}

void launch_gather_core(const float* a, float* out, int h, int w, int c, CoreRect core, cudaStream_t stream) {
  const size_t work = size_t(core.y1 - core.y0) * (core.x1 - core.x0) * (c / 4);
  auto a4 = reinterpret_cast<const float4*>(a);
  auto out4 = reinterpret_cast<float4*>(out);
  if (use_32bit(size_t(h) * w * (c / 4))) {
    NST_LAUNCH_INDEPENDENT(gather_core_kernel<uint32_t>, grid_for(work), kThreads, 0, stream)(a4, out4, w, c / 4, core);
  } else {
    NST_LAUNCH_INDEPENDENT(gather_core_kernel<size_t>, grid_for(work), kThreads, 0, stream)(a4, out4, w, c / 4, core);
  }
}

void launch_core_relu_backward(float* g, const float* a, const float* t, int h, int w, int c, CoreRect core,
                               float grad_coef, float loss_coef, double* loss, cudaStream_t stream) {
  const size_t work = size_t(h) * w * (c / 4);
  auto g4 = reinterpret_cast<float4*>(g);
  auto a4 = reinterpret_cast<const float4*>(a);
  auto t4 = reinterpret_cast<const float4*>(t);
  if (use_32bit(work)) {
    NST_LAUNCH(core_relu_backward_kernel<uint32_t>, grid_for(work, 1024), kThreads, 0, stream)
    (g4, a4, t4, h, w, c / 4, core, grad_coef, loss_coef, loss);
  } else {
    NST_LAUNCH(core_relu_backward_kernel<size_t>, grid_for(work, 1024), kThreads, 0, stream)
    (g4, a4, t4, h, w, c / 4, core, grad_coef, loss_coef, loss);
  }
}

// The loss alone: the backward kernel without a gradient to update.
void launch_core_content_loss(const float* a, const float* t, int h, int w, int c, CoreRect core, float loss_coef,
                              double* loss, cudaStream_t stream) {
  launch_core_relu_backward(nullptr, a, t, h, w, c, core, 0.f, loss_coef, loss, stream);
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
