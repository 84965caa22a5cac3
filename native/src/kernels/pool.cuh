// 2x2 stride-2 pooling with TensorFlow's SAME padding (pool_math.h), average
// or max, and its backward with the ReLU mask of the pooled map fused:
//   forward:  in (batch, h, w, c) -> out (batch, ceil(h/2), ceil(w/2), c)
//   backward: d_in = pool-backward(d_out) [* (in > 0) when relu_mask]; `in` is
//             the pooling's input (a post-ReLU map, whose positivity is the
//             ReLU's mask). Max: the gradient goes to the first maximum of the
//             window (row-major).
// The reference's backward scatters each output's gradient over its window;
// the kernel gathers, per input element, from the one window that covers it:
// two routes to the same sums.
//
// Precision: the same float additions in the same order, and the average
// scaled by 1, 1/2 or 1/4 (exact): 1e-6 relative.
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/common.h"
#include "kernels/pool_math.h"
#ifdef NST_KERNEL_DEFINITIONS
#include <cfloat>

#include "kernels/device.cuh"
#endif

namespace nst::kernels {

inline constexpr double kPoolTolerance = 1e-6;

// c a multiple of 4 (the kernels read float4s).
void launch_pool_forward(const float* in, float* out, int batch, int h, int w, int c, bool max_pool,
                         cudaStream_t stream);
void launch_pool_backward(const float* d_out, const float* in, float* d_in, int batch, int h, int w, int c,
                          bool max_pool, bool relu_mask, cudaStream_t stream);

inline void pool_forward_cpu(const float* in, float* out, int batch, int h, int w, int c, bool max_pool) {
  const int ho = pooled_size(h), wo = pooled_size(w);
  for (int b = 0; b < batch; b++)
    for (int oy = 0; oy < ho; oy++)
      for (int ox = 0; ox < wo; ox++)
        for (int k = 0; k < c; k++) {
          float acc = max_pool ? -INFINITY : 0.f;
          for (int y = 2 * oy; y < 2 * oy + window_extent(oy, h); y++)
            for (int x = 2 * ox; x < 2 * ox + window_extent(ox, w); x++) {
              const float v = in[((size_t(b) * h + y) * w + x) * c + k];
              acc = max_pool ? (v > acc ? v : acc) : acc + v;
            }
          const int count = window_extent(oy, h) * window_extent(ox, w);
          out[((size_t(b) * ho + oy) * wo + ox) * c + k] = max_pool ? acc : acc / float(count);
        }
}

inline void pool_backward_cpu(const float* d_out, const float* in, float* d_in, int batch, int h, int w, int c,
                              bool max_pool, bool relu_mask) {
  const int ho = pooled_size(h), wo = pooled_size(w);
  const size_t n = size_t(batch) * h * w * c;
  for (size_t i = 0; i < n; i++) d_in[i] = 0.f;
  auto at = [&](int b, int y, int x, int k) { return ((size_t(b) * h + y) * w + x) * c + k; };
  for (int b = 0; b < batch; b++)
    for (int oy = 0; oy < ho; oy++)
      for (int ox = 0; ox < wo; ox++)
        for (int k = 0; k < c; k++) {
          const float d = d_out[((size_t(b) * ho + oy) * wo + ox) * c + k];
          const int y_end = 2 * oy + window_extent(oy, h), x_end = 2 * ox + window_extent(ox, w);
          if (max_pool) {
            size_t first_max = at(b, 2 * oy, 2 * ox, k);
            for (int y = 2 * oy; y < y_end; y++)
              for (int x = 2 * ox; x < x_end; x++)
                if (in[at(b, y, x, k)] > in[first_max]) first_max = at(b, y, x, k);
            d_in[first_max] += d;
          } else {
            const int count = window_extent(oy, h) * window_extent(ox, w);
            for (int y = 2 * oy; y < y_end; y++)
              for (int x = 2 * ox; x < x_end; x++) d_in[at(b, y, x, k)] += d / float(count);
          }
        }
  if (relu_mask)
    for (size_t i = 0; i < n; i++)
      if (!(in[i] > 0.f)) d_in[i] = 0.f;
}

#ifdef NST_KERNEL_DEFINITIONS
namespace {

template <typename Index>
__global__ void pool_forward_kernel(const float4* in, float4* out, int batch, int h, int w, int c4, bool max_pool) {
  const Index ho_n = pooled_size(h), wo_n = pooled_size(w);
  const Index total = Index(batch) * ho_n * wo_n * c4;
  for (Index i = global_index<Index>(); i < total; i += global_stride<Index>()) {
    int cc = int(i % Index(c4));
    Index t = i / Index(c4);
    int wo = int(t % wo_n);
    t /= wo_n;
    int ho = int(t % ho_n);
    int b = int(t / ho_n);
    int eh = window_extent(ho, h), ew = window_extent(wo, w);
    float4 acc = max_pool ? make_float4(-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX) : make_float4(0.f, 0.f, 0.f, 0.f);
    for (int dy = 0; dy < eh; dy++) {
      for (int dx = 0; dx < ew; dx++) {
        float4 v = in[((Index(b) * h + 2 * ho + dy) * w + 2 * wo + dx) * c4 + cc];
        acc = max_pool ? fmax4(acc, v) : acc + v;
      }
    }
    out[i] = max_pool ? acc : (1.f / float(eh * ew)) * acc;
  }
}

// For one float lane of a max-pool window: is `mine` (row-major position
// within the window) the first position holding the window's maximum?
__device__ bool is_first_max(const float* window_values, int count, int mine) {
  int best = 0;
  for (int k = 1; k < count; k++) {
    if (window_values[k] > window_values[best]) best = k;
  }
  return best == mine;
}

template <typename Index>
__global__ void pool_backward_kernel(const float4* d_out, const float4* in, float4* d_in, int batch, int h, int w,
                                     int c4, bool max_pool, bool relu_mask) {
  const Index ho_n = pooled_size(h), wo_n = pooled_size(w);
  const Index total = Index(batch) * h * w * c4;
  for (Index i = global_index<Index>(); i < total; i += global_stride<Index>()) {
    int cc = int(i % Index(c4));
    Index t = i / Index(c4);
    int x = int(t % Index(w));
    t /= Index(w);
    int y = int(t % Index(h));
    int b = int(t / Index(h));
    int ho = y / 2, wo = x / 2;
    int eh = window_extent(ho, h), ew = window_extent(wo, w);
    float4 d = d_out[((Index(b) * ho_n + ho) * wo_n + wo) * c4 + cc];
    float4 g;
    if (max_pool) {
      float lanes[4][4];  // [lane][window position]
      for (int dy = 0; dy < eh; dy++) {
        for (int dx = 0; dx < ew; dx++) {
          float4 v = in[((Index(b) * h + 2 * ho + dy) * w + 2 * wo + dx) * c4 + cc];
          int k = dy * ew + dx;
          lanes[0][k] = v.x;
          lanes[1][k] = v.y;
          lanes[2][k] = v.z;
          lanes[3][k] = v.w;
        }
      }
      int mine = (y - 2 * ho) * ew + (x - 2 * wo), count = eh * ew;
      g = make_float4(is_first_max(lanes[0], count, mine) ? d.x : 0.f, is_first_max(lanes[1], count, mine) ? d.y : 0.f,
                      is_first_max(lanes[2], count, mine) ? d.z : 0.f, is_first_max(lanes[3], count, mine) ? d.w : 0.f);
    } else {
      g = (1.f / float(eh * ew)) * d;
    }
    d_in[i] = relu_mask ? mask_positive(g, in[i]) : g;
  }
}

}  // namespace

void launch_pool_forward(const float* in, float* out, int batch, int h, int w, int c, bool max_pool,
                         cudaStream_t stream) {
  size_t work = size_t(batch) * pooled_size(h) * pooled_size(w) * (c / 4);
  auto in4 = reinterpret_cast<const float4*>(in);
  auto out4 = reinterpret_cast<float4*>(out);
  if (use_32bit(size_t(batch) * h * w * (c / 4))) {
    NST_LAUNCH_INDEPENDENT(pool_forward_kernel<uint32_t>, grid_for(work), kThreads, 0, stream)
    (in4, out4, batch, h, w, c / 4, max_pool);
  } else {
    NST_LAUNCH_INDEPENDENT(pool_forward_kernel<size_t>, grid_for(work), kThreads, 0, stream)
    (in4, out4, batch, h, w, c / 4, max_pool);
  }
}

void launch_pool_backward(const float* d_out, const float* in, float* d_in, int batch, int h, int w, int c,
                          bool max_pool, bool relu_mask, cudaStream_t stream) {
  size_t work = size_t(batch) * h * w * (c / 4);
  auto d_out4 = reinterpret_cast<const float4*>(d_out);
  auto in4 = reinterpret_cast<const float4*>(in);
  auto d_in4 = reinterpret_cast<float4*>(d_in);
  if (use_32bit(work)) {
    NST_LAUNCH_INDEPENDENT(pool_backward_kernel<uint32_t>, grid_for(work), kThreads, 0, stream)
    (d_out4, in4, d_in4, batch, h, w, c / 4, max_pool, relu_mask);
  } else {
    NST_LAUNCH_INDEPENDENT(pool_backward_kernel<size_t>, grid_for(work), kThreads, 0, stream)
    (d_out4, in4, d_in4, batch, h, w, c / 4, max_pool, relu_mask);
  }
}
#endif  // NST_KERNEL_DEFINITIONS

}  // namespace nst::kernels
