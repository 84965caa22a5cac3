// What the files of the CUDA runtime stand-in (libnst_cudart_standin.so)
// share among themselves; the cuDNN and cuBLAS stand-ins and the emulated
// kernels see only runtime.h. One job per file:
//   errors.cc       the error state (sticky and per thread) and its strings
//   memory.cc       the allocation table, guard pages, the fault handler, cudaMalloc & co
//   streams.cc      stream queues, running queued work, capture checks, cudaStream* calls
//   copies.cc       cudaMemcpy*, cudaMemset*
//   events.cc       cudaEvent* calls
//   graphs.cc       stream capture into graphs, their instantiation and launch
//   device_info.cc  the one device and its properties
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime.h"

namespace nst::emu {

// ---- errors.cc ---------------------------------------------------------------

// The sticky error (cudaSuccess while there is none): once device work has
// failed, every later runtime call returns it, as a lost GPU context does
// (so it is also what a call that did its work returns).
cudaError_t sticky_error();
// Sets the thread's last error without a detail (cudaGetErrorString then
// gives the generic text).
void set_last_error(cudaError_t code);

// ---- memory.cc ---------------------------------------------------------------

// The emulated device's memory size (NST_EMULATED_GPU_MEMORY_MIB, else 4 GiB).
size_t memory_total();

// While one of these lives, the host thread runs device work: device memory
// is accessible. Nested (a synchronous copy inside a drain) is fine. Only
// under the execution lock (streams.cc's exec_mutex).
struct DeviceAccess {
  DeviceAccess();
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};

// Makes pinned memory awaiting a device-to-host copy unreadable to the host
// (readable = false) until the copy has run (readable = true).
void set_host_protection(void* p, bool readable);

// ---- streams.cc --------------------------------------------------------------

// One piece of queued work.
struct Op {
  uint64_t seq;
  const char* what;
  std::function<void()> work;
};

// A captured (or instantiated) graph: the work, in order.
struct Graph {
  std::vector<Op> ops;
};

struct Stream {
  std::deque<Op> queue;
  uint64_t next_seq = 1;
  uint64_t done_seq = 0;
  bool capturing = false;
  bool capture_invalidated = false;
  std::thread::id capture_thread;
  cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
  std::unique_ptr<Graph> graph;
};

// Guards streams, events and graphs.
std::recursive_mutex& queue_mutex();
// The stream behind a handle (0, cudaStreamLegacy and cudaStreamPerThread
// are the legacy default stream); null when the handle is not a live stream.
// Under queue_mutex().
Stream* stream_of(cudaStream_t s);
bool is_legacy(const Stream* s);
// Runs `stream`'s queued work up to and including sequence number `upto`.
void drain(Stream* s, uint64_t upto);
// Runs every stream's queued work.
void drain_all();
// Runs `work` now as device work: under the execution lock (one "device"),
// with device memory accessible (a synchronous copy).
void run_as_device_work(const std::function<void()>& work);
// A call that is unsafe during capture: fails, and invalidates the capture,
// when the calling thread has a stream in capture; else cudaSuccess.
cudaError_t refuse_during_capture(const char* call);

}  // namespace nst::emu
