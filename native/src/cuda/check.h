// Every CUDA, cuDNN and cuBLAS call goes through one of these: a failure
// becomes nst::Error with one line naming the operation and the reason.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "cuda/dnn_api.h"
#include "engine.h"

namespace nst::cuda {

// NST_CUDA_VERBOSE=1: the engine reports its choices (algorithms, bytes) on stderr.
inline bool verbose() {
  const char* v = std::getenv("NST_CUDA_VERBOSE");
  return v && *v && *v != '0';
}

inline void check_cuda(cudaError_t status, const char* operation) {
  if (status != cudaSuccess) {
    throw Error(std::string("cuda: ") + operation + " failed: " + cudaGetErrorString(status) + " (" +
                cudaGetErrorName(status) + ")");
  }
}

// After a kernel launch: catches bad launch configurations at once.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

inline void check_cudnn(const DnnApi& api, cudnnStatus_t status, const char* operation) {
  if (status != CUDNN_STATUS_SUCCESS) {
    throw Error(std::string("cuda: ") + operation + " failed: " + api.cudnnGetErrorString(status) + " (cuDNN status " +
                std::to_string(status) + ")");
  }
}

inline void check_cublas(const DnnApi& api, cublasStatus_t status, const char* operation) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(std::string("cuda: ") + operation + " failed: " + api.cublasGetStatusString(status) +
                " (cuBLAS status " + std::to_string(status) + ")");
  }
}

}  // namespace nst::cuda
