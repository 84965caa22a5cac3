// Kernel launches, one way for nvcc and for the CPU stand-in (native/emulation):
//   NST_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...);
//   NST_LAUNCH_INDEPENDENT(kernel, grid, block, shared_bytes, stream)(args...);
// Under nvcc both are kernel<<<grid, block, shared_bytes, stream>>>. Compiled
// by a host compiler (the emulated build), they run the kernel on the CPU;
// INDEPENDENT declares that the kernel's threads never meet (no
// __syncthreads, no shuffle), which lets the stand-in run them as plain calls
// (and it fails if one does meet).
#pragma once

#include <cuda_runtime.h>

#if defined(__CUDACC__)
#define NST_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#define NST_LAUNCH_INDEPENDENT(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#else
#include "device.h"  // native/emulation: the stand-in's device side
#define NST_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  NST_EMU_LAUNCH(kernel, grid, block, shared_bytes, stream, false)
#define NST_LAUNCH_INDEPENDENT(kernel, grid, block, shared_bytes, stream) \
  NST_EMU_LAUNCH(kernel, grid, block, shared_bytes, stream, true)
#endif
