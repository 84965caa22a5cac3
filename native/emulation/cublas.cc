// A stand-in for the subset of cuBLAS the engine declares (native/src/cuda/
// dnn_api.h): handles, stream, workspace, math mode, and a strided batched
// SGEMM as a plain loop (libcublas_standin.so, loaded through
// NST_CUBLAS_PATH). Each matrix's whole extent (leading dimension, strides,
// batch) is checked against the runtime's allocation table before the work
// is queued on the handle's stream.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cuda/dnn_api.h"
#include "runtime.h"

using namespace nst::cuda;

namespace {

constexpr cublasStatus_t kNotInitialized = 1, kInvalidValue = 7, kExecutionFailed = 13;

nst::emu::LibraryProblems problems("cuBLAS");

cublasStatus_t problem(cublasStatus_t status, const std::string& what) { return problems.report(status, what); }

struct Handle {
  cudaStream_t stream = nullptr;
};
std::vector<std::unique_ptr<Handle>> handles;

Handle* find(cublasHandle_t h) {
  for (auto& x : handles)
    if (reinterpret_cast<cublasHandle_t>(x.get()) == h) return x.get();
  return nullptr;
}

// Bytes a (rows x cols, leading dimension ld) matrix spans over `batch` strided copies.
size_t extent_bytes(int rows, int cols, int ld, long long stride, int batch) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  size_t last = size_t(stride) * (batch - 1) + size_t(ld) * (cols - 1) + rows;
  return last * sizeof(float);
}

struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha, beta;
  const float *a, *b;
  float* c;
  int lda, ldb, ldc;
  long long sa, sb, sc;
  int batch;
};

// C = alpha op(A) op(B) + beta C, column-major, one batch item per iteration.
void run(const Gemm& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int item = 0; item < g.batch; item++) {
    for (int j = 0; j < g.n; j++) {
      const float* A = g.a + g.sa * item;
      const float* B = g.b + g.sb * item;
      float* C = g.c + g.sc * item + size_t(j) * g.ldc;
      std::vector<float> acc(g.m, 0.f);
      for (int l = 0; l < g.k; l++) {
        const float bv = g.tb == CUBLAS_OP_N ? B[l + size_t(j) * g.ldb] : B[j + size_t(l) * g.ldb];
        if (g.ta == CUBLAS_OP_N) {
          const float* __restrict col = A + size_t(l) * g.lda;
          float* __restrict out = acc.data();
          for (int i = 0; i < g.m; i++) out[i] += col[i] * bv;
        } else {
          for (int i = 0; i < g.m; i++) acc[i] += A[l + size_t(i) * g.lda] * bv;
        }
      }
      for (int i = 0; i < g.m; i++) C[i] = g.alpha * acc[i] + (g.beta != 0.f ? g.beta * C[i] : 0.f);
    }
  }
}

}  // namespace

static const char* generic_status_string(cublasStatus_t status) {
  switch (status) {
    case 0:
      return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kInvalidValue:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case kExecutionFailed:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    default:
      return "CUBLAS_STATUS_UNKNOWN";
  }
}

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  handles.push_back(std::make_unique<Handle>());
  *handle = reinterpret_cast<cublasHandle_t>(handles.back().get());
  return 0;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  for (size_t i = 0; i < handles.size(); i++) {
    if (reinterpret_cast<cublasHandle_t>(handles[i].get()) == handle) {
      handles.erase(handles.begin() + i);
      return 0;
    }
  }
  return problem(kNotInitialized, "cublasDestroy: invalid handle");
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t, int* version) {
  *version = 130000;
  return 0;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  Handle* h = find(handle);
  if (!h) return problem(kNotInitialized, "cublasSetStream: invalid handle");
  h->stream = stream;
  return 0;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (!find(handle)) return problem(kNotInitialized, "cublasSetWorkspace: invalid handle");
  std::string why = nst::emu::device_range_problem(workspace, bytes);
  if (!why.empty()) return problem(kInvalidValue, "cublasSetWorkspace: workspace " + why);
  return 0;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t) {
  return find(handle) ? 0 : problem(kNotInitialized, "cublasSetMathMode: invalid handle");
}

const char* cublasGetStatusString(cublasStatus_t status) {
  return problems.text(status, generic_status_string(status));
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m,
                                         int n, int k, const float* alpha, const float* a, int lda, long long sa,
                                         const float* b, int ldb, long long sb, const float* beta, float* c, int ldc,
                                         long long sc, int batch) {
  const char* call = "cublasSgemmStridedBatched";
  Handle* h = find(handle);
  if (!h) return problem(kNotInitialized, std::string(call) + ": invalid handle");
  const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
  const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) ||
      ldc < std::max(1, m) || sa < 0 || sb < 0 || sc < 0) {
    return problem(kInvalidValue, std::string(call) + ": invalid sizes or leading dimensions");
  }
  std::string why;
  if (size_t bytes = extent_bytes(a_rows, a_cols, lda, sa, batch)) why = nst::emu::device_range_problem(a, bytes);
  if (!why.empty()) return problem(kInvalidValue, std::string(call) + ": A " + why);
  if (size_t bytes = extent_bytes(b_rows, b_cols, ldb, sb, batch)) why = nst::emu::device_range_problem(b, bytes);
  if (!why.empty()) return problem(kInvalidValue, std::string(call) + ": B " + why);
  if (size_t bytes = extent_bytes(m, n, ldc, sc, batch)) why = nst::emu::device_range_problem(c, bytes);
  if (!why.empty()) return problem(kInvalidValue, std::string(call) + ": C " + why);
  // Host scalars (the default pointer mode), read at the call.
  Gemm g{ta, tb, m, n, k, *alpha, *beta, a, b, c, lda, ldb, ldc, sa, sb, sc, batch};
  cudaError_t e = nst::emu::enqueue(h->stream, call, [g] { run(g); });
  if (e != cudaSuccess) return problem(kExecutionFailed, std::string(call) + ": " + cudaGetErrorString(e));
  return 0;
}

}  // extern "C"
