// Index math of 2x2 stride-2 pooling with TensorFlow's SAME padding, shared
// by the CUDA kernels and their host references/tests (llm.c style: one
// definition, compiled for both sides).
//
// An axis of size n pools to ceil(n/2). Output position o covers input rows
// 2o and 2o+1, except that the last window of an odd axis covers only 2o
// (TF pads at the bottom/right). Avg divides by the number of VALID elements
// (1, 2 or 4 in 2-D), never by the padded 4.
#pragma once

#if defined(__CUDACC__)
#define NST_HD __host__ __device__ __forceinline__
#else
#define NST_HD inline
#endif

namespace nst::kernels {

NST_HD int pooled_size(int n) { return (n + 1) / 2; }

// Number of valid input elements in window `o` of an axis of size n (1 or 2).
NST_HD int window_extent(int o, int n) { return (2 * o + 1 < n) ? 2 : 1; }

}  // namespace nst::kernels
