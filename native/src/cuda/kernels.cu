// The engine's own kernels. All are memory-bound element-wise passes, written
// for coalescing (NHWC, float4 across channels) and grid-stride loops; loss
// terms are reduced per block in double and added atomically per batch item.
#include <cfloat>
#include <cstdint>

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

// Index arithmetic: Index is uint32_t when every index of the launch is
// below 2^31 (32-bit / and % are several times cheaper than 64-bit ones on a
// GPU; i + stride cannot wrap, the stride being at most 2^20), else size_t.
template <typename Index>
__device__ Index global_index() {
  return Index(blockIdx.x) * blockDim.x + threadIdx.x;
}
template <typename Index>
__device__ Index global_stride() {
  return Index(gridDim.x) * blockDim.x;
}

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

template <typename Index>
__global__ void bias_relu_kernel(float4* y, const float4* bias, Index count4, Index channels4) {
  for (Index i = global_index<Index>(); i < count4; i += global_stride<Index>()) {
    float4 v = y[i] + bias[i % channels4];
    y[i] = fmax4(v, make_float4(0.f, 0.f, 0.f, 0.f));
  }
}

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

// one_minus_beta* come from the host in double precision: 1.f - 0.999f is off by 5e-5 relative.
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

bool force_64bit = false;

// Whether indices up to `elements` (the largest tensor a launch touches, in
// its kernel's units) take the 32-bit path.
bool use_32bit(size_t elements) { return !force_64bit && elements < (size_t(1) << 31); }

}  // namespace

int index_bits(size_t elements) { return use_32bit(elements) ? 32 : 64; }
void force_64bit_indices(bool on) { force_64bit = on; }

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

void launch_tv_loss_grad(const float* x, float* g, int batch, int h, int w, float grad_coef, double* loss,
                         cudaStream_t stream) {
  dim3 grid(grid_for(size_t(h) * w, 1024), static_cast<unsigned int>(batch));
  if (use_32bit(size_t(batch) * h * w * 3)) {
    NST_LAUNCH(tv_loss_grad_kernel<uint32_t>, grid, kThreads, 0, stream)(x, g, h, w, grad_coef, loss);
  } else {
    NST_LAUNCH(tv_loss_grad_kernel<size_t>, grid, kThreads, 0, stream)(x, g, h, w, grad_coef, loss);
  }
}

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

}  // namespace nst::cuda
