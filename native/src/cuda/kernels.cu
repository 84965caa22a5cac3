// The engine's own kernels. All are memory-bound element-wise passes, written
// for coalescing (NHWC, float4 across channels) and grid-stride loops; loss
// terms are reduced per block in double and added atomically per batch item.
#include <cfloat>

#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/pool_math.h"

namespace nst::cuda {
namespace {

constexpr int kThreads = 256;

// Enough blocks to fill the GPU a few times over; grid-stride loops do the rest.
unsigned int grid_for(size_t work, unsigned int cap = 4096) {
  size_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned int>(blocks < cap ? blocks : cap);
}

__device__ size_t global_index() { return size_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ size_t global_stride() { return size_t(gridDim.x) * blockDim.x; }

// Sum of `v` over the block, valid in thread 0 (blockDim.x a multiple of 32).
__device__ double block_sum(double v) {
  __shared__ double warp_sums[32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  double total = 0;
  if (warp == 0) {
    int warps = blockDim.x >> 5;
    total = lane < warps ? warp_sums[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_down_sync(0xffffffffu, total, offset);
  }
  return total;
}

__device__ void add_loss(double* slot, double block_value) {
  if (threadIdx.x == 0 && block_value != 0.0) atomicAdd(slot, block_value);
}

__device__ float4 operator+(float4 a, float4 b) { return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w); }
__device__ float4 operator-(float4 a, float4 b) { return make_float4(a.x - b.x, a.y - b.y, a.z - b.z, a.w - b.w); }
__device__ float4 operator*(float s, float4 a) { return make_float4(s * a.x, s * a.y, s * a.z, s * a.w); }
__device__ float4 fmax4(float4 a, float4 b) {
  return make_float4(fmaxf(a.x, b.x), fmaxf(a.y, b.y), fmaxf(a.z, b.z), fmaxf(a.w, b.w));
}
__device__ float4 mask_positive(float4 g, float4 a) {
  return make_float4(a.x > 0.f ? g.x : 0.f, a.y > 0.f ? g.y : 0.f, a.z > 0.f ? g.z : 0.f, a.w > 0.f ? g.w : 0.f);
}
__device__ double sum_squares(float4 d) {
  return double(d.x) * d.x + double(d.y) * d.y + double(d.z) * d.z + double(d.w) * d.w;
}

__global__ void bias_relu_kernel(float4* y, const float4* bias, size_t count4, int channels4) {
  for (size_t i = global_index(); i < count4; i += global_stride()) {
    float4 v = y[i] + bias[i % channels4];
    y[i] = fmax4(v, make_float4(0.f, 0.f, 0.f, 0.f));
  }
}

__global__ void pool_forward_kernel(const float4* in, float4* out, int batch, int h, int w, int c4, bool max_pool) {
  const int ho_n = pooled_size(h), wo_n = pooled_size(w);
  const size_t total = size_t(batch) * ho_n * wo_n * c4;
  for (size_t i = global_index(); i < total; i += global_stride()) {
    int cc = int(i % c4);
    size_t t = i / c4;
    int wo = int(t % wo_n);
    t /= wo_n;
    int ho = int(t % ho_n);
    int b = int(t / ho_n);
    int eh = window_extent(ho, h), ew = window_extent(wo, w);
    float4 acc = max_pool ? make_float4(-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX) : make_float4(0.f, 0.f, 0.f, 0.f);
    for (int dy = 0; dy < eh; dy++) {
      for (int dx = 0; dx < ew; dx++) {
        float4 v = in[((size_t(b) * h + 2 * ho + dy) * w + 2 * wo + dx) * c4 + cc];
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

__global__ void pool_backward_kernel(const float4* d_out, const float4* in, float4* d_in, int batch, int h, int w,
                                     int c4, bool max_pool, bool relu_mask) {
  const int ho_n = pooled_size(h), wo_n = pooled_size(w);
  const size_t total = size_t(batch) * h * w * c4;
  for (size_t i = global_index(); i < total; i += global_stride()) {
    int cc = int(i % c4);
    size_t t = i / c4;
    int x = int(t % w);
    t /= w;
    int y = int(t % h);
    int b = int(t / h);
    int ho = y / 2, wo = x / 2;
    int eh = window_extent(ho, h), ew = window_extent(wo, w);
    float4 d = d_out[((size_t(b) * ho_n + ho) * wo_n + wo) * c4 + cc];
    float4 g;
    if (max_pool) {
      float lanes[4][4];  // [lane][window position]
      for (int dy = 0; dy < eh; dy++) {
        for (int dx = 0; dx < ew; dx++) {
          float4 v = in[((size_t(b) * h + 2 * ho + dy) * w + 2 * wo + dx) * c4 + cc];
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

__global__ void relu_backward_kernel(float4* g, const float4* a, const float4* target, float grad_coef,
                                     float loss_coef, double* loss, size_t per_item4) {
  const size_t base = size_t(blockIdx.y) * per_item4;
  double sq = 0;
  for (size_t i = global_index(); i < per_item4; i += global_stride()) {
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

__global__ void style_gram_diff_kernel(float* gram, const float* target, size_t per_item, float loss_coef,
                                       float grad_coef, double* loss) {
  const size_t base = size_t(blockIdx.y) * per_item;
  double sq = 0;
  for (size_t i = global_index(); i < per_item; i += global_stride()) {
    float d = gram[base + i] - target[base + i];
    sq += double(d) * d;
    gram[base + i] = grad_coef * d;
  }
  add_loss(&loss[blockIdx.y * kLossSlots + kStyleSlot], loss_coef * block_sum(sq));
}

__global__ void tv_loss_grad_kernel(const float* x, float* g, int h, int w, float grad_coef, double* loss) {
  const size_t base = size_t(blockIdx.y) * h * w * 3;
  const size_t pixels = size_t(h) * w;
  double sq = 0;
  for (size_t p = global_index(); p < pixels; p += global_stride()) {
    int i = int(p / w), j = int(p % w);
    for (int c = 0; c < 3; c++) {
      auto at = [&](int ii, int jj) { return x[base + (size_t(ii) * w + jj) * 3 + c]; };
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

// one_minus_beta* come from the host in double precision: 1.f - 0.999f is off by 5e-5 relative.
__global__ void adam_kernel(float* x, float* m, float* v, const float* g, size_t n, float beta1, float one_minus_beta1,
                            float beta2, float one_minus_beta2, float eps, const float* step_sizes,
                            const int* step_index) {
  const float lr = step_sizes[*step_index];
  for (size_t i = global_index(); i < n; i += global_stride()) {
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

void launch_bias_relu(float* y, const float* bias, size_t count, int channels, cudaStream_t stream) {
  NST_LAUNCH_INDEPENDENT(bias_relu_kernel, grid_for(count / 4), kThreads, 0, stream)(reinterpret_cast<float4*>(y),
                                                                 reinterpret_cast<const float4*>(bias), count / 4,
                                                                 channels / 4);
}

void launch_pool_forward(const float* in, float* out, int batch, int h, int w, int c, bool max_pool,
                         cudaStream_t stream) {
  size_t work = size_t(batch) * pooled_size(h) * pooled_size(w) * (c / 4);
  NST_LAUNCH_INDEPENDENT(pool_forward_kernel, grid_for(work), kThreads, 0, stream)(reinterpret_cast<const float4*>(in),
                                                               reinterpret_cast<float4*>(out), batch, h, w, c / 4,
                                                               max_pool);
}

void launch_pool_backward(const float* d_out, const float* in, float* d_in, int batch, int h, int w, int c,
                          bool max_pool, bool relu_mask, cudaStream_t stream) {
  size_t work = size_t(batch) * h * w * (c / 4);
  NST_LAUNCH_INDEPENDENT(pool_backward_kernel, grid_for(work), kThreads, 0, stream)(
      reinterpret_cast<const float4*>(d_out), reinterpret_cast<const float4*>(in), reinterpret_cast<float4*>(d_in),
      batch, h, w, c / 4, max_pool, relu_mask);
}

void launch_relu_backward(float* g, const float* a, const float* target, float grad_coef, float loss_coef,
                          double* loss, size_t per_item, int batch, cudaStream_t stream) {
  dim3 grid(grid_for(per_item / 4, 1024), static_cast<unsigned int>(batch));
  NST_LAUNCH(relu_backward_kernel, grid, kThreads, 0, stream)(reinterpret_cast<float4*>(g),
                                                      reinterpret_cast<const float4*>(a),
                                                      reinterpret_cast<const float4*>(target), grad_coef, loss_coef,
                                                      loss, per_item / 4);
}

void launch_style_gram_diff(float* gram, const float* target, int c, int batch, float loss_coef, float grad_coef,
                            double* loss, cudaStream_t stream) {
  size_t per_item = size_t(c) * c;
  dim3 grid(grid_for(per_item, 256), static_cast<unsigned int>(batch));
  NST_LAUNCH(style_gram_diff_kernel, grid, kThreads, 0, stream)(gram, target, per_item, loss_coef, grad_coef, loss);
}

void launch_tv_loss_grad(const float* x, float* g, int batch, int h, int w, float grad_coef, double* loss,
                         cudaStream_t stream) {
  dim3 grid(grid_for(size_t(h) * w, 1024), static_cast<unsigned int>(batch));
  NST_LAUNCH(tv_loss_grad_kernel, grid, kThreads, 0, stream)(x, g, h, w, grad_coef, loss);
}

void launch_adam(float* x, float* m, float* v, const float* g, size_t n, double beta1, double beta2, double eps,
                 const float* step_sizes, const int* step_index, cudaStream_t stream) {
  NST_LAUNCH_INDEPENDENT(adam_kernel, grid_for(n), kThreads, 0, stream)(x, m, v, g, n, float(beta1), float(1.0 - beta1), float(beta2),
                                                    float(1.0 - beta2), float(eps), step_sizes, step_index);
}

void launch_advance_step(int* step_index, cudaStream_t stream) {
  NST_LAUNCH_INDEPENDENT(advance_step_kernel, 1, 1, 0, stream)(step_index);
}

}  // namespace nst::cuda
