// The subset of the cuDNN (legacy convolution API, still in cuDNN 9) and
// cuBLAS C APIs this engine uses, declared here because the build machines
// have neither header. Enum values are the libraries' real numeric values;
// the functions are resolved with dlsym (library_search.h) into DnnApi.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace nst::cuda {

// ---- cuDNN ----
typedef struct cudnnContext* cudnnHandle_t;
typedef struct cudnnTensorStruct* cudnnTensorDescriptor_t;
typedef struct cudnnFilterStruct* cudnnFilterDescriptor_t;
typedef struct cudnnConvolutionStruct* cudnnConvolutionDescriptor_t;
typedef struct cudnnActivationStruct* cudnnActivationDescriptor_t;
typedef int cudnnStatus_t;  // CUDNN_STATUS_SUCCESS = 0
inline constexpr cudnnStatus_t CUDNN_STATUS_SUCCESS = 0;

enum cudnnDataType_t { CUDNN_DATA_FLOAT = 0 };
enum cudnnTensorFormat_t { CUDNN_TENSOR_NCHW = 0, CUDNN_TENSOR_NHWC = 1 };
enum cudnnConvolutionMode_t { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 };
enum cudnnMathType_t {
  CUDNN_DEFAULT_MATH = 0,  // tensor cores allowed (TF32 for float on Ampere+)
  CUDNN_TENSOR_OP_MATH = 1,
  CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
  CUDNN_FMA_MATH = 3,  // plain FP32 FMA only
};
enum cudnnActivationMode_t { CUDNN_ACTIVATION_RELU = 1, CUDNN_ACTIVATION_IDENTITY = 5 };
enum cudnnNanPropagation_t { CUDNN_NOT_PROPAGATE_NAN = 0 };
inline constexpr int kCudnnFwdAlgoImplicitPrecompGemm = 1;
enum cudnnDeterminism_t { CUDNN_NON_DETERMINISTIC = 0, CUDNN_DETERMINISTIC = 1 };
typedef int cudnnConvolutionFwdAlgo_t;      // 0..7
typedef int cudnnConvolutionBwdDataAlgo_t;  // 0..5
inline constexpr int kCudnnFwdAlgoCount = 8;
inline constexpr int kCudnnBwdDataAlgoCount = 6;

struct cudnnConvolutionFwdAlgoPerf_t {
  cudnnConvolutionFwdAlgo_t algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t mathType;
  int reserved[3];
};
struct cudnnConvolutionBwdDataAlgoPerf_t {
  cudnnConvolutionBwdDataAlgo_t algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t mathType;
  int reserved[3];
};
// cudnnFind* writes arrays of these: the layout must be the C header's
// (LP64: 4+4+4, pad, 8-byte memory at offset 16, 4+4+12, pad = 48 bytes).
static_assert(sizeof(cudnnMathType_t) == 4 && sizeof(cudnnDeterminism_t) == 4, "cuDNN enums are int-sized");
static_assert(sizeof(cudnnConvolutionFwdAlgoPerf_t) == 48 && offsetof(cudnnConvolutionFwdAlgoPerf_t, memory) == 16 &&
                  offsetof(cudnnConvolutionFwdAlgoPerf_t, mathType) == 28,
              "cudnnConvolutionFwdAlgoPerf_t layout differs from cudnn_cnn.h");
static_assert(sizeof(cudnnConvolutionBwdDataAlgoPerf_t) == 48 &&
                  offsetof(cudnnConvolutionBwdDataAlgoPerf_t, memory) == 16 &&
                  offsetof(cudnnConvolutionBwdDataAlgoPerf_t, mathType) == 28,
              "cudnnConvolutionBwdDataAlgoPerf_t layout differs from cudnn_cnn.h");

// ---- cuBLAS ----
typedef struct cublasContext* cublasHandle_t;
typedef int cublasStatus_t;  // CUBLAS_STATUS_SUCCESS = 0
inline constexpr cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
};

// Function table, filled by load_dnn_api(). Names follow the C API.
struct DnnApi {
  std::string cudnn_path, cublas_path;

  size_t (*cudnnGetVersion)();
  const char* (*cudnnGetErrorString)(cudnnStatus_t);
  cudnnStatus_t (*cudnnCreate)(cudnnHandle_t*);
  cudnnStatus_t (*cudnnDestroy)(cudnnHandle_t);
  cudnnStatus_t (*cudnnSetStream)(cudnnHandle_t, cudaStream_t);
  cudnnStatus_t (*cudnnCreateTensorDescriptor)(cudnnTensorDescriptor_t*);
  cudnnStatus_t (*cudnnDestroyTensorDescriptor)(cudnnTensorDescriptor_t);
  cudnnStatus_t (*cudnnSetTensor4dDescriptor)(cudnnTensorDescriptor_t, cudnnTensorFormat_t, cudnnDataType_t, int n,
                                              int c, int h, int w);
  cudnnStatus_t (*cudnnCreateFilterDescriptor)(cudnnFilterDescriptor_t*);
  cudnnStatus_t (*cudnnDestroyFilterDescriptor)(cudnnFilterDescriptor_t);
  cudnnStatus_t (*cudnnSetFilter4dDescriptor)(cudnnFilterDescriptor_t, cudnnDataType_t, cudnnTensorFormat_t, int k,
                                              int c, int h, int w);
  cudnnStatus_t (*cudnnCreateConvolutionDescriptor)(cudnnConvolutionDescriptor_t*);
  cudnnStatus_t (*cudnnDestroyConvolutionDescriptor)(cudnnConvolutionDescriptor_t);
  cudnnStatus_t (*cudnnSetConvolution2dDescriptor)(cudnnConvolutionDescriptor_t, int pad_h, int pad_w, int u, int v,
                                                   int dilation_h, int dilation_w, cudnnConvolutionMode_t,
                                                   cudnnDataType_t compute_type);
  cudnnStatus_t (*cudnnSetConvolutionMathType)(cudnnConvolutionDescriptor_t, cudnnMathType_t);
  cudnnStatus_t (*cudnnFindConvolutionForwardAlgorithm)(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                        cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t,
                                                        cudnnTensorDescriptor_t y, int requested, int* returned,
                                                        cudnnConvolutionFwdAlgoPerf_t* results);
  cudnnStatus_t (*cudnnFindConvolutionBackwardDataAlgorithm)(cudnnHandle_t, cudnnFilterDescriptor_t w,
                                                             cudnnTensorDescriptor_t dy, cudnnConvolutionDescriptor_t,
                                                             cudnnTensorDescriptor_t dx, int requested, int* returned,
                                                             cudnnConvolutionBwdDataAlgoPerf_t* results);
  cudnnStatus_t (*cudnnConvolutionForward)(cudnnHandle_t, const void* alpha, cudnnTensorDescriptor_t x,
                                           const void* x_data, cudnnFilterDescriptor_t w, const void* w_data,
                                           cudnnConvolutionDescriptor_t, cudnnConvolutionFwdAlgo_t, void* workspace,
                                           size_t workspace_bytes, const void* beta, cudnnTensorDescriptor_t y,
                                           void* y_data);
  cudnnStatus_t (*cudnnConvolutionBackwardData)(cudnnHandle_t, const void* alpha, cudnnFilterDescriptor_t w,
                                                const void* w_data, cudnnTensorDescriptor_t dy, const void* dy_data,
                                                cudnnConvolutionDescriptor_t, cudnnConvolutionBwdDataAlgo_t,
                                                void* workspace, size_t workspace_bytes, const void* beta,
                                                cudnnTensorDescriptor_t dx, void* dx_data);
  // Fused conv + bias + ReLU (NST_CUDA_FUSED_CONV=1). cuDNN requires IMPLICIT_PRECOMP_GEMM
  // only with ACTIVATION_IDENTITY; we pin it for ReLU too (see ConvPlan, conv.h).
  cudnnStatus_t (*cudnnCreateActivationDescriptor)(cudnnActivationDescriptor_t*);
  cudnnStatus_t (*cudnnDestroyActivationDescriptor)(cudnnActivationDescriptor_t);
  cudnnStatus_t (*cudnnSetActivationDescriptor)(cudnnActivationDescriptor_t, cudnnActivationMode_t,
                                                cudnnNanPropagation_t, double coef);
  cudnnStatus_t (*cudnnConvolutionBiasActivationForward)(
      cudnnHandle_t, const void* alpha1, cudnnTensorDescriptor_t x, const void* x_data, cudnnFilterDescriptor_t w,
      const void* w_data, cudnnConvolutionDescriptor_t, cudnnConvolutionFwdAlgo_t, void* workspace,
      size_t workspace_bytes, const void* alpha2, cudnnTensorDescriptor_t z, const void* z_data,
      cudnnTensorDescriptor_t bias, const void* bias_data, cudnnActivationDescriptor_t, cudnnTensorDescriptor_t y,
      void* y_data);

  cublasStatus_t (*cublasCreate_v2)(cublasHandle_t*);
  cublasStatus_t (*cublasDestroy_v2)(cublasHandle_t);
  cublasStatus_t (*cublasGetVersion_v2)(cublasHandle_t, int*);
  cublasStatus_t (*cublasSetStream_v2)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*cublasSetWorkspace_v2)(cublasHandle_t, void*, size_t);
  cublasStatus_t (*cublasSetMathMode)(cublasHandle_t, cublasMath_t);
  const char* (*cublasGetStatusString)(cublasStatus_t);
  cublasStatus_t (*cublasSgemmStridedBatched)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m, int n, int k,
                                              const float* alpha, const float* a, int lda, long long stride_a,
                                              const float* b, int ldb, long long stride_b, const float* beta, float* c,
                                              int ldc, long long stride_c, int batch_count);
};

// Loads cuBLAS then cuDNN once per process (they stay loaded); throws nst::Error.
const DnnApi& load_dnn_api();

}  // namespace nst::cuda
