// An owning device allocation (RAII), as used for every buffer of the engine.
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "engine.h"

namespace nst::cuda {

// A device allocation, freed with its owner; failure names what it was for.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, const char* what) : bytes_(bytes) {
    if (bytes_ == 0) return;
    cudaError_t status = cudaMalloc(&ptr_, bytes_);
    if (status != cudaSuccess) {
      cudaGetLastError();  // clear the (non-sticky) allocation error
      throw Error(std::string("cuda: cudaMalloc of ") + what + " (" + std::to_string(bytes_) + " bytes" +
                  ") failed: " + cudaGetErrorString(status));
    }
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  float* f() const { return static_cast<float*>(ptr_); }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace nst::cuda
