// The error state of the CUDA runtime stand-in: the thread's last error with
// the detail that cudaGetErrorString adds to the generic text, the sticky
// error of failed device work, and the libraries' (cuDNN's, cuBLAS's) last
// failure texts.
#include <cstdio>
#include <string>

#include "cudart_internal.h"

namespace nst::emu {
namespace {

cudaError_t sticky = cudaSuccess;  // under queue_mutex()
std::string sticky_detail;
thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_detail;  // for cudaGetErrorString of last_error
thread_local std::string error_text;
thread_local cudaError_t detail_code = cudaSuccess;

const char* generic_error_string(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    default:
      return "unknown error";
  }
}

}  // namespace

cudaError_t sticky_error() { return sticky; }

void set_last_error(cudaError_t code) {
  last_error = code;
  detail_code = cudaSuccess;
}

cudaError_t fail(cudaError_t code, const std::string& what) {
  std::fprintf(stderr, "nst cuda stand-in: %s\n", what.c_str());
  last_error = code;
  detail_code = code;
  last_detail = what;
  return code;
}

void fail_sticky(cudaError_t code, const std::string& what) {
  std::fprintf(stderr, "nst cuda stand-in: %s\n", what.c_str());
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  if (sticky == cudaSuccess) {
    sticky = code;
    sticky_detail = what;
  }
}

namespace {
// One per thread for all libraries: only the latest failure's text is kept.
thread_local std::string library_problem;
thread_local const char* library_problem_owner = nullptr;
thread_local int library_problem_status = 0;
}  // namespace

int LibraryProblems::report(int status, const std::string& what) {
  std::fprintf(stderr, "nst cuda stand-in: %s: %s\n", library_, what.c_str());
  library_problem = what;
  library_problem_owner = library_;
  library_problem_status = status;
  return status;
}

const char* LibraryProblems::text(int status, const char* generic) const {
  bool mine = library_problem_owner == library_ && status == library_problem_status && !library_problem.empty();
  return mine ? library_problem.c_str() : generic;
}

}  // namespace nst::emu

// ---- the CUDA runtime API ------------------------------------------------------

using namespace nst::emu;

extern "C" {

cudaError_t cudaGetLastError(void) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return sticky_error() != cudaSuccess ? sticky_error() : last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  const char* base = generic_error_string(error);
  if (error == sticky_error() && !sticky_detail.empty()) {
    error_text = std::string(base) + " (stand-in: " + sticky_detail + ")";
    return error_text.c_str();
  }
  if (error == detail_code && !last_detail.empty()) {
    error_text = std::string(base) + " (stand-in: " + last_detail + ")";
    return error_text.c_str();
  }
  return base;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    default:
      return "cudaErrorUnknown";
  }
}

}  // extern "C"
