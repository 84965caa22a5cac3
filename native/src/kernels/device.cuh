// Device-side helpers of the kernel families: grid sizing, grid-stride
// indices in 32 or 64 bits, block reductions in double, float4 arithmetic.
// Included only where the kernels are defined (native/src/cuda/kernels.cu,
// under nvcc or the CPU stand-in).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/launch.h"
#include "kernels/common.h"

namespace nst::kernels {
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

bool force_64bit = false;

// Whether indices up to `elements` (the largest tensor a launch touches, in
// its kernel's units) take the 32-bit path.
bool use_32bit(size_t elements) { return !force_64bit && elements < (size_t(1) << 31); }

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

}  // namespace
}  // namespace nst::kernels
