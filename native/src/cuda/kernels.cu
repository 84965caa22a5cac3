// The one translation unit that defines the kernel families' CUDA kernels and
// launchers (native/src/kernels/*.cuh), under nvcc or, compiled as C++, on the
// CPU stand-in (native/emulation). All are memory-bound element-wise passes,
// written for coalescing (NHWC, float4 across channels) and grid-stride loops;
// loss terms are reduced per block in double and added atomically per batch
// item.
#define NST_KERNEL_DEFINITIONS
#include "cuda/kernels.h"

namespace nst::kernels {

int index_bits(size_t elements) { return use_32bit(elements) ? 32 : 64; }
void force_64bit_indices(bool on) { force_64bit = on; }

}  // namespace nst::kernels
