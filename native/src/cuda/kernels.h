// The engine's own CUDA kernels (everything cuDNN/cuBLAS do not do), as
// host-callable launchers so that plain C++ (engine.cc) can call them. Each
// launcher enqueues on `stream` and returns cudaGetLastError()'s result is
// checked by the caller (check.h). Tensors are float32 NHWC.
//
// Loss accumulators: `loss` points at a double[batch][kLossSlots]; kernels
// atomically add their (weighted, pre-alpha/beta) term for batch item b into
// loss[b * kLossSlots + slot].
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace nst::cuda {

inline constexpr int kLossSlots = 3;
enum LossSlot { kContentSlot = 0, kStyleSlot = 1, kTvSlot = 2 };

// y = max(y + bias[c], 0) for an NHWC map of `count` floats with `channels`
// channels (both multiples of 4).
void launch_bias_relu(float* y, const float* bias, size_t count, int channels, cudaStream_t stream);

// 2x2 stride-2 TF-SAME pooling (pool_math.h): in (batch, h, w, c) ->
// out (batch, ceil(h/2), ceil(w/2), c). c a multiple of 4.
void launch_pool_forward(const float* in, float* out, int batch, int h, int w, int c, bool max_pool,
                         cudaStream_t stream);

// d_in = pool-backward(d_out) [* (in > 0) when relu_mask]; `in` is the
// pooling's input (the post-ReLU map, whose positivity is the ReLU mask).
// Max: the gradient goes to the first maximum of the window (row-major).
void launch_pool_backward(const float* d_out, const float* in, float* d_in, int batch, int h, int w, int c,
                          bool max_pool, bool relu_mask, cudaStream_t stream);

// Backward through a ReLU at a loss layer or not, per batch item b:
//   g = (g + grad_coef * (a - target)) * (a > 0)        (target may be null)
//   loss[b][content] += loss_coef * sum (a - target)^2  (when target)
// `per_item` floats per batch item.
void launch_relu_backward(float* g, const float* a, const float* target, float grad_coef, float loss_coef, double* loss,
                          size_t per_item, int batch, cudaStream_t stream);

// Per batch item b, for c x c Grams: with D = gram - target,
//   loss[b][style] += loss_coef * sum D^2,  gram <- grad_coef * D   (in place)
void launch_style_gram_diff(float* gram, const float* target, int c, int batch, float loss_coef, float grad_coef,
                            double* loss, cudaStream_t stream);

// Total variation of x (batch, h, w, 3): loss[b][tv] += J_tv (unweighted),
// g += grad_coef * dJ_tv/dx.
void launch_tv_loss_grad(const float* x, float* g, int batch, int h, int w, float grad_coef, double* loss,
                         cudaStream_t stream);

// TF1 Adam, in place; lr_t = step_sizes[*step_index] (device memory, so the
// launch can sit in a CUDA graph replayed with new step sizes).
void launch_adam(float* x, float* m, float* v, const float* g, size_t n, double beta1, double beta2, double eps,
                 const float* step_sizes, const int* step_index, cudaStream_t stream);

// ++*step_index (one thread; after the update that used it).
void launch_advance_step(int* step_index, cudaStream_t stream);

// The width of the element-wise kernels' index arithmetic for a launch whose
// largest tensor has `elements` elements (in the kernel's units): 32 below
// 2^31, else 64. force_64bit_indices(true) makes every launch take the
// 64-bit path (for the self-test, which checks both paths).
int index_bits(size_t elements);
void force_64bit_indices(bool on);

}  // namespace nst::cuda
