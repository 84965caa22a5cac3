// Copies and fills of the CUDA runtime stand-in. Each checks its pointers
// against the allocation table exactly (direction, extent, freed memory). A
// copy from pageable host memory is staged at the call, as the driver does;
// one to pageable memory returns when it has run; pinned memory awaiting a
// device-to-host copy is unreadable until the copy has run.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cudart_internal.h"

namespace nst::emu {
namespace {

// The direction a copy's pointers must have.
std::string copy_problem(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaMemcpyKind* resolved) {
  PointerKind d = classify(dst), s = classify(src);
  if (kind == cudaMemcpyDefault) {
    bool dd = d == PointerKind::Device, sd = s == PointerKind::Device;
    kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
              : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  *resolved = kind;
  std::string problem;
  auto need_device = [&](const void* p, const char* role) {
    std::string why = device_range_problem(p, n);
    if (!why.empty()) problem += std::string(problem.empty() ? "" : "; ") + role + " " + why;
  };
  auto need_host = [&](PointerKind k, const char* role) {
    if (k == PointerKind::Device || k == PointerKind::FreedDevice) {
      problem += std::string(problem.empty() ? "" : "; ") + role + " is device memory where host memory is required";
    } else if (k == PointerKind::Null && n > 0) {
      problem += std::string(problem.empty() ? "" : "; ") + role + " is null";
    }
  };
  switch (kind) {
    case cudaMemcpyHostToDevice:
      need_device(dst, "destination");
      need_host(s, "source");
      break;
    case cudaMemcpyDeviceToHost:
      need_device(src, "source");
      need_host(d, "destination");
      break;
    case cudaMemcpyDeviceToDevice:
      need_device(dst, "destination");
      need_device(src, "source");
      break;
    case cudaMemcpyHostToHost:
      need_host(d, "destination");
      need_host(s, "source");
      break;
    default:
      problem = "unknown copy kind";
  }
  return problem;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToDevice:
      return "HostToDevice";
    case cudaMemcpyDeviceToHost:
      return "DeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "DeviceToDevice";
    case cudaMemcpyHostToHost:
      return "HostToHost";
    default:
      return "Default";
  }
}

}  // namespace
}  // namespace nst::emu

using namespace nst::emu;

extern "C" {

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (n == 0) return cudaSuccess;
  cudaMemcpyKind resolved;
  std::string problem = copy_problem(dst, src, n, kind, &resolved);
  if (!problem.empty())
    return fail(cudaErrorInvalidValue, std::string("cudaMemcpyAsync ") + kind_name(kind) + ": " + problem);
  const bool capturing_now = [&] {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex());
    Stream* s = stream_of(stream);
    return s && s->capturing;
  }();
  if (resolved == cudaMemcpyHostToDevice) {
    if (classify(src) == PointerKind::Pinned) {
      return enqueue(stream, "cudaMemcpyAsync HostToDevice", [dst, src, n] { std::memcpy(dst, src, n); });
    }
    if (capturing_now) {
      return fail(cudaErrorStreamCaptureUnsupported, "cudaMemcpyAsync from pageable host memory during stream capture");
    }
    // Pageable source: staged at the call, as the driver does.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + n);
    return enqueue(stream, "cudaMemcpyAsync HostToDevice",
                   [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  }
  if (resolved == cudaMemcpyDeviceToHost) {
    if (classify(dst) == PointerKind::Pinned) {
      set_host_protection(dst, false);  // unreadable until the copy has run
      return enqueue(stream, "cudaMemcpyAsync DeviceToHost", [dst, src, n] {
        set_host_protection(dst, true);
        std::memcpy(dst, src, n);
      });
    }
    if (capturing_now) {
      return fail(cudaErrorStreamCaptureUnsupported, "cudaMemcpyAsync to pageable host memory during stream capture");
    }
    // Pageable destination: the call returns when the copy is done.
    if (cudaError_t e = enqueue(stream, "cudaMemcpyAsync DeviceToHost", [dst, src, n] { std::memcpy(dst, src, n); }))
      return e;
    Stream* s;
    {
      std::lock_guard<std::recursive_mutex> lock(queue_mutex());
      s = stream_of(stream);
    }
    drain(s, UINT64_MAX);
    return sticky_error();
  }
  return enqueue(stream, "cudaMemcpyAsync", [dst, src, n] { std::memmove(dst, src, n); });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (cudaError_t e = refuse_during_capture("cudaMemcpy (synchronous)")) return e;
  if (sticky_error() != cudaSuccess) return sticky_error();
  cudaMemcpyKind resolved;
  std::string problem = copy_problem(dst, src, n, kind, &resolved);
  if (!problem.empty())
    return fail(cudaErrorInvalidValue, std::string("cudaMemcpy ") + kind_name(kind) + ": " + problem);
  drain_all();
  run_as_device_work([&] {
    if (resolved == cudaMemcpyDeviceToHost) set_host_protection(dst, true);
    std::memmove(dst, src, n);
  });
  return sticky_error();
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (n == 0) return cudaSuccess;
  std::string problem = device_range_problem(p, n);
  if (!problem.empty()) return fail(cudaErrorInvalidValue, "cudaMemsetAsync: destination " + problem);
  return enqueue(stream, "cudaMemsetAsync", [p, value, n] { std::memset(p, value, n); });
}

cudaError_t cudaMemset(void* p, int value, size_t n) {
  if (cudaError_t e = refuse_during_capture("cudaMemset (synchronous)")) return e;
  cudaError_t e = cudaMemsetAsync(p, value, n, nullptr);
  if (e != cudaSuccess) return e;
  return cudaDeviceSynchronize();
}

}  // extern "C"
