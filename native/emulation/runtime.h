// What the parts of the CPU stand-in for the CUDA platform share: the
// allocation table behind the strictness checks, the stream work queue, and
// the error path. Implemented by the runtime's files (libnst_cudart_standin.so;
// cudart_internal.h says which does what), used by
// the emulated kernel launch (device.h), and by the cuDNN and cuBLAS
// stand-ins, which link the same shared runtime so that there is one table.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

namespace nst::emu {

// Where a pointer points, as the checks see it.
enum class PointerKind { Null, Device, FreedDevice, Pinned, Host };

// Classifies `p` (Host: anything the table does not know).
PointerKind classify(const void* p);

// "" when [p, p + bytes) lies inside one live device allocation; else why not
// ("... is a host pointer", "... was freed", "... ends 12 bytes past ...").
std::string device_range_problem(const void* p, size_t bytes);

// Records a strictness failure: prints "nst cuda stand-in: <what>" on stderr
// and makes `code` the thread's last error (cudaGetErrorString then names
// `what`); returns `code`.
cudaError_t fail(cudaError_t code, const std::string& what);

// A device-side failure during queued work: sticky, as on a GPU (every later
// runtime call returns it).
void fail_sticky(cudaError_t code, const std::string& what);

// Queues `work` on `stream` (0 = the legacy default stream), or records it
// into the stream's graph while the stream is capturing. Work runs in order
// when the host synchronises (or a synchronous call forces it). Returns an
// error (and queues nothing) when the stream is invalid.
cudaError_t enqueue(cudaStream_t stream, const char* what, std::function<void()> work);

// A library stand-in's failures (cuDNN's, cuBLAS's): each is printed as
// "nst cuda stand-in: <library>: <what>", and the library's error-string call
// returns `what` for the status of the thread's last failure.
class LibraryProblems {
 public:
  explicit LibraryProblems(const char* library) : library_(library) {}
  int report(int status, const std::string& what);
  const char* text(int status, const char* generic) const;

 private:
  const char* library_;
};

// Whether the calling host thread has a stream in capture (for the
// "no synchronisation or allocation inside capture" checks).
bool capturing();

// Device memory in live allocations now, and the most there was since the
// last reset_device_bytes_peak() (or the start): what tests hold a memory
// plan against.
size_t device_bytes_in_use();
size_t device_bytes_peak();
void reset_device_bytes_peak();

}  // namespace nst::emu
