// What every kernel family (native/src/kernels/*.cuh) shares on the host side:
// the loss accumulators' layout, the width of the launches' index arithmetic,
// and the stream type of the launchers.
//
// A family file holds one computation three times over: its CUDA kernel(s)
// and launcher (compiled once, in native/src/cuda/kernels.cu, which defines
// NST_KERNEL_DEFINITIONS before including the families), a CPU reference with
// the launcher's parameters less the stream (inline: the cpu engine runs it,
// the kernel self-test compares the kernel with it), and its stated precision
// (a comment and the tolerance the self-test holds the kernel to).
#pragma once

#include <cstddef>

// The launchers' stream type, declared as CUDA's driver_types.h declares it,
// so that the cpu engine's build needs no CUDA headers (the two declarations
// agree wherever both are seen).
struct CUstream_st;
typedef CUstream_st* cudaStream_t;

namespace nst::kernels {

// Loss accumulators: `loss` points at a double[batch][kLossSlots]; a loss
// kernel adds its (weighted, pre-alpha/beta) term for batch item b into
// loss[b * kLossSlots + slot].
inline constexpr int kLossSlots = 4;
enum LossSlot { kContentSlot = 0, kStyleSlot = 1, kTvSlot = 2, kTemporalSlot = 3 };

// The width of the kernels' index arithmetic for a launch whose largest
// tensor has `elements` elements (in the kernel's units): 32 below 2^31, else
// 64. force_64bit_indices(true) makes every launch take the 64-bit path (for
// the self-test, which checks both paths). Defined with the kernels.
int index_bits(size_t elements);
void force_64bit_indices(bool on);

}  // namespace nst::kernels
