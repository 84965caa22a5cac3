// The device side of the CPU stand-in: what kernels.cu needs from CUDA when
// it is compiled by a host compiler (g++) instead of nvcc. Included only by
// native/src/cuda/launch.h in the emulated build.
//
// A launch runs every block of the grid one after another; inside a block,
// each CUDA thread is a fiber (block.cc) so that __syncthreads and the warp
// shuffles really wait for the other threads, and are checked: all threads
// of the block must reach the same __syncthreads, and every lane named in a
// shuffle's mask must take part in that shuffle. Kernels launched with
// NST_LAUNCH_INDEPENDENT declare that their threads never synchronise: they
// run as plain calls, thread after thread, and fail if one does.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime.h"

// The built-in variables, set by the block scheduler before it runs a thread.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local uint3 blockDim;
extern thread_local uint3 gridDim;

// One copy per host thread, and a host thread runs one block at a time: the
// block's threads (fibers of that host thread) share it, as on a GPU. (The
// reserved names below are CUDA's own: the kernels use them.)
#undef __shared__
#define __shared__ static thread_local  // NOLINT(bugprone-reserved-identifier)

namespace nst::emu {

// Block-level primitives (block.cc).
void block_barrier();
uint64_t warp_shuffle_down(unsigned mask, uint64_t bits, unsigned delta, int width);
// Checks that an atomic's target is device memory (a kernel bug otherwise).
void check_atomic_target(const void* p, size_t bytes);

struct LaunchShape {
  const char* kernel;
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
  bool independent;  // threads never synchronise: run as plain calls
};

// Validates the configuration and the pointer arguments (`pointer_problems`,
// one line per bad argument, "" when all are device memory or null), then
// queues the grid on the stream. At execution the arguments are checked
// again (a replayed graph may hold pointers freed since its capture).
void launch_grid(const LaunchShape& shape, const std::function<std::string()>& pointer_problems,
                 const std::function<void()>& thread_body);

template <typename T>
void describe_pointer_arg(std::string& problems, const char* kernel, int index, const T& arg) {
  if constexpr (std::is_pointer_v<T>) {
    if (arg == nullptr) return;
    PointerKind kind = classify(arg);
    if (kind == PointerKind::Device) return;
    problems += std::string(problems.empty() ? "" : "; ") + "kernel " + kernel + " argument " + std::to_string(index) +
                " (" + std::to_string(reinterpret_cast<uintptr_t>(arg)) + ") " +
                (kind == PointerKind::FreedDevice ? "points into a freed device allocation"
                 : kind == PointerKind::Pinned    ? "is pinned host memory, not device memory"
                                                  : "is a host pointer, not device memory");
  }
}

template <typename T>
struct Identity {
  using type = T;
};

template <typename... Params>
class BoundLaunch {
 public:
  BoundLaunch(LaunchShape shape, void (*kernel)(Params...)) : shape_(shape), kernel_(kernel) {}

  // Arguments convert to the kernel's parameter types, as with <<<>>>.
  void operator()(typename Identity<Params>::type... args) const {
    auto kernel = kernel_;
    const char* name = shape_.kernel;
    auto problems = [name, args...]() {
      std::string out;
      int index = 0;
      (describe_pointer_arg(out, name, index++, args), ...);
      return out;
    };
    launch_grid(shape_, problems, [kernel, args...]() { kernel(args...); });
  }

 private:
  LaunchShape shape_;
  void (*kernel_)(Params...);
};

template <typename... Params>
BoundLaunch<Params...> bind_launch(LaunchShape shape, void (*kernel)(Params...)) {
  return BoundLaunch<Params...>(shape, kernel);
}

template <typename T>
T atomic_add(T* address, T value) {
  static_assert(std::is_arithmetic_v<T>, "atomicAdd on arithmetic types only");
  check_atomic_target(address, sizeof(T));
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
  } else {
    T old, next;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
      next = old + value;
    } while (!__atomic_compare_exchange(address, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
  }
}

}  // namespace nst::emu

inline void __syncthreads() { nst::emu::block_barrier(); }  // NOLINT(bugprone-reserved-identifier)

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {  // NOLINT(bugprone-reserved-identifier)
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = nst::emu::warp_shuffle_down(mask, bits, delta, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

inline double atomicAdd(double* address, double value) { return nst::emu::atomic_add(address, value); }
inline float atomicAdd(float* address, float value) { return nst::emu::atomic_add(address, value); }
inline int atomicAdd(int* address, int value) { return nst::emu::atomic_add(address, value); }
inline unsigned atomicAdd(unsigned* address, unsigned value) { return nst::emu::atomic_add(address, value); }

#define NST_EMU_LAUNCH(kernel, grid, block, shared_bytes, stream, independent) \
  ::nst::emu::bind_launch(                                                     \
      ::nst::emu::LaunchShape{#kernel, dim3(grid), dim3(block), size_t(shared_bytes), stream, independent}, kernel)
