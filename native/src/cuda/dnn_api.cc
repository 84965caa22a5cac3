#include "cuda/dnn_api.h"

#include <mutex>

#include "cuda/library_search.h"
#include "engine.h"

namespace nst::cuda {
namespace {

// Assigns dlsym(name) to a typed function pointer member.
template <typename Fn>
void bind_symbol(Fn*& slot, void* handle, const char* name, const std::string& library) {
  slot = reinterpret_cast<Fn*>(library_symbol(handle, name, library));
}
#define NST_BIND(handle, lib, fn) bind_symbol(api.fn, handle, #fn, lib)

DnnApi load_once() {
  DnnApi api{};
  // cuBLAS first: cuDNN's sub-libraries may look for cuBLASLt by soname.
  void* blas = open_library(cublas_spec(), &api.cublas_path);
  NST_BIND(blas, api.cublas_path, cublasCreate_v2);
  NST_BIND(blas, api.cublas_path, cublasDestroy_v2);
  NST_BIND(blas, api.cublas_path, cublasGetVersion_v2);
  NST_BIND(blas, api.cublas_path, cublasSetStream_v2);
  NST_BIND(blas, api.cublas_path, cublasSetWorkspace_v2);
  NST_BIND(blas, api.cublas_path, cublasSetMathMode);
  NST_BIND(blas, api.cublas_path, cublasGetStatusString);
  NST_BIND(blas, api.cublas_path, cublasSgemmStridedBatched);

  void* dnn = open_library(cudnn_spec(), &api.cudnn_path);
  NST_BIND(dnn, api.cudnn_path, cudnnGetVersion);
  NST_BIND(dnn, api.cudnn_path, cudnnGetErrorString);
  NST_BIND(dnn, api.cudnn_path, cudnnCreate);
  NST_BIND(dnn, api.cudnn_path, cudnnDestroy);
  NST_BIND(dnn, api.cudnn_path, cudnnSetStream);
  NST_BIND(dnn, api.cudnn_path, cudnnCreateTensorDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnDestroyTensorDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnSetTensor4dDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnCreateFilterDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnDestroyFilterDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnSetFilter4dDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnCreateConvolutionDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnDestroyConvolutionDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnSetConvolution2dDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnSetConvolutionMathType);
  NST_BIND(dnn, api.cudnn_path, cudnnFindConvolutionForwardAlgorithm);
  NST_BIND(dnn, api.cudnn_path, cudnnFindConvolutionBackwardDataAlgorithm);
  NST_BIND(dnn, api.cudnn_path, cudnnConvolutionForward);
  NST_BIND(dnn, api.cudnn_path, cudnnConvolutionBackwardData);
  NST_BIND(dnn, api.cudnn_path, cudnnCreateActivationDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnDestroyActivationDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnSetActivationDescriptor);
  NST_BIND(dnn, api.cudnn_path, cudnnConvolutionBiasActivationForward);
  if (api.cudnnGetVersion() < 8000) {
    throw Error(
        ErrorCode::Unsupported, "backend",
        "cuDNN: " + api.cudnn_path + " is version " + std::to_string(api.cudnnGetVersion()) + ", need 8.0 or newer");
  }
  return api;
}
#undef NST_BIND

}  // namespace

const DnnApi& load_dnn_api() {
  // A failed load is retried on the next engine creation (the user may fix
  // NST_CUDNN_PATH in between only across processes, but it costs nothing).
  static std::mutex mutex;
  static DnnApi api;
  static bool loaded = false;
  std::lock_guard<std::mutex> lock(mutex);
  if (!loaded) {
    api = load_once();
    loaded = true;
  }
  return api;
}

}  // namespace nst::cuda
