// A stand-in for the subset of cuDNN the engine declares (native/src/cuda/
// dnn_api.h): descriptors, algorithm search, and the 2-D cross-correlation
// forward, backward-data and fused bias+activation forward, as plain loops on
// NHWC float tensors (libcudnn_standin.so, loaded through NST_CUDNN_PATH).
//
// Every call checks its descriptors against each other and every data
// pointer against the runtime's allocation table (the bytes the descriptor
// says it spans must be live device memory) before queueing the work on the
// handle's stream; a failure returns CUDNN_STATUS_BAD_PARAM with the reason
// as cudnnGetErrorString's text.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda/dnn_api.h"
#include "runtime.h"

using namespace nst::cuda;

namespace {

constexpr cudnnStatus_t kBadParam = 3, kNotSupported = 9, kNotInitialized = 1, kExecutionFailed = 8;
// The algorithm the stand-in says needs a workspace (so that the engine's
// workspace plumbing is exercised), and how much.
constexpr int kWorkspaceAlgo = kCudnnFwdAlgoImplicitPrecompGemm;
constexpr size_t kWorkspaceBytes = 4096;

nst::emu::LibraryProblems problems("cuDNN");

cudnnStatus_t problem(cudnnStatus_t status, const std::string& what) { return problems.report(status, what); }

struct Tensor {
  int n = 0, c = 0, h = 0, w = 0;
  bool set = false;
  size_t bytes() const { return size_t(n) * c * h * w * sizeof(float); }
};
struct Filter {
  int k = 0, c = 0, r = 0, s = 0;
  bool set = false;
  size_t bytes() const { return size_t(k) * c * r * s * sizeof(float); }
};
struct Conv {
  int pad_h = 0, pad_w = 0;
  bool set = false;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};
struct Activation {
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_IDENTITY;
};
struct Handle {
  cudaStream_t stream = nullptr;
};

// Pointers handed out, so that a destroyed or foreign descriptor is an error.
template <typename T>
struct Registry {
  std::vector<std::unique_ptr<T>> live;
  T* make() {
    live.push_back(std::make_unique<T>());
    return live.back().get();
  }
  T* find(const void* p) {
    for (auto& x : live)
      if (x.get() == p) return x.get();
    return nullptr;
  }
  bool drop(const void* p) {
    for (size_t i = 0; i < live.size(); i++) {
      if (live[i].get() == p) {
        live.erase(live.begin() + i);
        return true;
      }
    }
    return false;
  }
};
Registry<Tensor> tensors;
Registry<Filter> filters;
Registry<Conv> convs;
Registry<Activation> activations;
Registry<Handle> handles;

std::string check_range(const void* p, size_t bytes, const char* role) {
  std::string why = nst::emu::device_range_problem(p, bytes);
  return why.empty() ? "" : std::string(role) + " " + why;
}

// The shapes of one convolution, checked against each other.
struct ConvShape {
  Tensor x, y;
  Filter w;
  Conv conv;
};

cudnnStatus_t resolve(const char* call, cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd,
                      cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, ConvShape* out) {
  Tensor *x = tensors.find(xd), *y = tensors.find(yd);
  Filter* w = filters.find(wd);
  Conv* c = convs.find(cd);
  if (!x || !y || !w || !c) return problem(kBadParam, std::string(call) + ": a descriptor is invalid or destroyed");
  if (!x->set || !y->set || !w->set || !c->set)
    return problem(kBadParam, std::string(call) + ": a descriptor was never set");
  char text[256];
  int oh = x->h + 2 * c->pad_h - w->r + 1, ow = x->w + 2 * c->pad_w - w->s + 1;
  if (x->c != w->c || y->c != w->k || y->n != x->n || y->h != oh || y->w != ow) {
    std::snprintf(text, sizeof text,
                  "%s: shapes disagree: x %dx%dx%dx%d, filter %dx%dx%dx%d, y %dx%dx%dx%d (expected %dx%dx%dx%d)", call,
                  x->n, x->c, x->h, x->w, w->k, w->c, w->r, w->s, y->n, y->c, y->h, y->w, x->n, w->k, oh, ow);
    return problem(kBadParam, text);
  }
  *out = {*x, *y, *w, *c};
  return 0;
}

cudnnStatus_t check_workspace(const char* call, int algo, const void* workspace, size_t bytes) {
  if (algo < 0 || algo >= kCudnnFwdAlgoCount)
    return problem(kBadParam, std::string(call) + ": algorithm " + std::to_string(algo) + " does not exist");
  if (algo != kWorkspaceAlgo) return 0;
  if (bytes < kWorkspaceBytes) {
    return problem(kBadParam, std::string(call) + ": algorithm " + std::to_string(algo) + " needs a " +
                                  std::to_string(kWorkspaceBytes) + "-byte workspace, got " + std::to_string(bytes));
  }
  std::string why = check_range(workspace, kWorkspaceBytes, "workspace");
  if (!why.empty()) return problem(kBadParam, std::string(call) + ": " + why);
  return 0;
}

cudnnStatus_t queue(cudnnHandle_t handle, const char* what, std::function<void()> work) {
  Handle* h = handles.find(handle);
  if (!h) return problem(kNotInitialized, std::string(what) + ": invalid handle");
  cudaError_t e = nst::emu::enqueue(h->stream, what, std::move(work));
  if (e != cudaSuccess) return problem(kExecutionFailed, std::string(what) + ": " + cudaGetErrorString(e));
  return 0;
}

// KRSC -> RSCK, so that the forward's innermost loop runs over output channels.
std::vector<float> filter_rsck(const Filter& f, const float* w) {
  std::vector<float> t(size_t(f.k) * f.r * f.s * f.c);
  for (int k = 0; k < f.k; k++)
    for (int rs = 0; rs < f.r * f.s; rs++)
      for (int c = 0; c < f.c; c++) t[(size_t(rs) * f.c + c) * f.k + k] = w[(size_t(k) * f.r * f.s + rs) * f.c + c];
  return t;
}

// y = alpha * conv(x, w) + beta * y, then (when bias) + bias and ReLU,
// with an extra alpha2 * z term (z may be y itself).
void forward(const ConvShape& sh, float alpha, const float* x, const float* w, float beta, float* y,
             const float* bias = nullptr, bool relu = false, float alpha2 = 0.f, const float* z = nullptr) {
  const Tensor &X = sh.x, &Y = sh.y;
  const Filter& F = sh.w;
  std::vector<float> wt = filter_rsck(F, w);
  const int K = F.k, C = F.c;
#pragma omp parallel
  {
    std::vector<float> acc(K);
#pragma omp for collapse(2) schedule(static)
    for (int n = 0; n < Y.n; n++) {
      for (int oh = 0; oh < Y.h; oh++) {
        for (int ow = 0; ow < Y.w; ow++) {
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int r = 0; r < F.r; r++) {
            int ih = oh + r - sh.conv.pad_h;
            if (ih < 0 || ih >= X.h) continue;
            for (int s = 0; s < F.s; s++) {
              int iw = ow + s - sh.conv.pad_w;
              if (iw < 0 || iw >= X.w) continue;
              const float* xp = x + ((size_t(n) * X.h + ih) * X.w + iw) * C;
              const float* wp = wt.data() + size_t(r * F.s + s) * C * K;
              float* __restrict a = acc.data();
              for (int c = 0; c < C; c++) {
                const float xv = xp[c];
                const float* __restrict wr = wp + size_t(c) * K;
                for (int k = 0; k < K; k++) a[k] += xv * wr[k];
              }
            }
          }
          float* yp = y + ((size_t(n) * Y.h + oh) * Y.w + ow) * K;
          const float* zp = z ? z + ((size_t(n) * Y.h + oh) * Y.w + ow) * K : nullptr;
          for (int k = 0; k < K; k++) {
            float v = alpha * acc[k];
            if (zp)
              v += alpha2 * zp[k];
            else if (beta != 0.f)
              v += beta * yp[k];
            if (bias) v += bias[k];
            if (relu) v = v > 0.f ? v : 0.f;
            yp[k] = v;
          }
        }
      }
    }
  }
}

// dx = alpha * conv^T(dy, w) + beta * dx.
void backward_data(const ConvShape& sh, float alpha, const float* w, const float* dy, float beta, float* dx) {
  const Tensor &X = sh.x, &Y = sh.y;
  const Filter& F = sh.w;
  const int K = F.k, C = F.c;
  // KRSC -> RSKC: the innermost loop runs over input channels.
  std::vector<float> wt(size_t(K) * F.r * F.s * C);
  for (int k = 0; k < K; k++)
    for (int rs = 0; rs < F.r * F.s; rs++)
      std::memcpy(&wt[(size_t(rs) * K + k) * C], w + (size_t(k) * F.r * F.s + rs) * C, sizeof(float) * C);
#pragma omp parallel
  {
    std::vector<float> acc(C);
#pragma omp for collapse(2) schedule(static)
    for (int n = 0; n < X.n; n++) {
      for (int ih = 0; ih < X.h; ih++) {
        for (int iw = 0; iw < X.w; iw++) {
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int r = 0; r < F.r; r++) {
            int oh = ih + sh.conv.pad_h - r;
            if (oh < 0 || oh >= Y.h) continue;
            for (int s = 0; s < F.s; s++) {
              int ow = iw + sh.conv.pad_w - s;
              if (ow < 0 || ow >= Y.w) continue;
              const float* dyp = dy + ((size_t(n) * Y.h + oh) * Y.w + ow) * K;
              const float* wp = wt.data() + size_t(r * F.s + s) * K * C;
              float* __restrict a = acc.data();
              for (int k = 0; k < K; k++) {
                const float g = dyp[k];
                const float* __restrict wr = wp + size_t(k) * C;
                for (int c = 0; c < C; c++) a[c] += g * wr[c];
              }
            }
          }
          float* dxp = dx + ((size_t(n) * X.h + ih) * X.w + iw) * C;
          for (int c = 0; c < C; c++) dxp[c] = alpha * acc[c] + (beta != 0.f ? beta * dxp[c] : 0.f);
        }
      }
    }
  }
}

template <typename Perf>
void report_algorithms(int requested, int* returned, Perf* results, cudnnMathType_t math) {
  // Two candidates, fastest first: the one with a workspace, then GEMM.
  const int algos[2] = {kWorkspaceAlgo, 0};
  int n = requested < 2 ? requested : 2;
  for (int i = 0; i < n; i++) {
    std::memset(&results[i], 0, sizeof(Perf));
    results[i].algo = algos[i];
    results[i].status = 0;
    results[i].time = float(i + 1);
    results[i].memory = algos[i] == kWorkspaceAlgo ? kWorkspaceBytes : 0;
    results[i].determinism = CUDNN_DETERMINISTIC;
    // Plain FP32 loops: FMA math unless tensor-op math was asked for.
    results[i].mathType = math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : math;
  }
  *returned = n;
}

}  // namespace

static const char* generic_status_string(cudnnStatus_t status) {
  switch (status) {
    case 0:
      return "CUDNN_STATUS_SUCCESS";
    case kNotInitialized:
      return "CUDNN_STATUS_NOT_INITIALIZED";
    case kBadParam:
      return "CUDNN_STATUS_BAD_PARAM";
    case kExecutionFailed:
      return "CUDNN_STATUS_EXECUTION_FAILED";
    case kNotSupported:
      return "CUDNN_STATUS_NOT_SUPPORTED";
    default:
      return "CUDNN_STATUS_UNKNOWN";
  }
}

extern "C" {

size_t cudnnGetVersion() { return 90000; }

const char* cudnnGetErrorString(cudnnStatus_t status) { return problems.text(status, generic_status_string(status)); }

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  *handle = reinterpret_cast<cudnnHandle_t>(handles.make());
  return 0;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  return handles.drop(handle) ? 0 : problem(kBadParam, "cudnnDestroy: invalid handle");
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  Handle* h = handles.find(handle);
  if (!h) return problem(kBadParam, "cudnnSetStream: invalid handle");
  h->stream = stream;
  return 0;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) {
  *d = reinterpret_cast<cudnnTensorDescriptor_t>(tensors.make());
  return 0;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  return tensors.drop(d) ? 0 : problem(kBadParam, "cudnnDestroyTensorDescriptor: invalid descriptor");
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format, cudnnDataType_t type,
                                         int n, int c, int h, int w) {
  Tensor* t = tensors.find(d);
  if (!t) return problem(kBadParam, "cudnnSetTensor4dDescriptor: invalid descriptor");
  if (format != CUDNN_TENSOR_NHWC || type != CUDNN_DATA_FLOAT)
    return problem(kNotSupported, "cudnnSetTensor4dDescriptor: the stand-in has NHWC float only");
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
    return problem(kBadParam, "cudnnSetTensor4dDescriptor: a dimension is not positive");
  *t = {n, c, h, w, true};
  return 0;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) {
  *d = reinterpret_cast<cudnnFilterDescriptor_t>(filters.make());
  return 0;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  return filters.drop(d) ? 0 : problem(kBadParam, "cudnnDestroyFilterDescriptor: invalid descriptor");
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  Filter* f = filters.find(d);
  if (!f) return problem(kBadParam, "cudnnSetFilter4dDescriptor: invalid descriptor");
  if (format != CUDNN_TENSOR_NHWC || type != CUDNN_DATA_FLOAT)
    return problem(kNotSupported, "cudnnSetFilter4dDescriptor: the stand-in has NHWC (KRSC) float only");
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0)
    return problem(kBadParam, "cudnnSetFilter4dDescriptor: a dimension is not positive");
  *f = {k, c, h, w, true};
  return 0;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  *d = reinterpret_cast<cudnnConvolutionDescriptor_t>(convs.make());
  return 0;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  return convs.drop(d) ? 0 : problem(kBadParam, "cudnnDestroyConvolutionDescriptor: invalid descriptor");
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute_type) {
  Conv* c = convs.find(d);
  if (!c) return problem(kBadParam, "cudnnSetConvolution2dDescriptor: invalid descriptor");
  if (u != 1 || v != 1 || dilation_h != 1 || dilation_w != 1 || mode != CUDNN_CROSS_CORRELATION ||
      compute_type != CUDNN_DATA_FLOAT) {
    return problem(
        kNotSupported,
        "cudnnSetConvolution2dDescriptor: the stand-in has stride 1, dilation 1 float cross-correlation only");
  }
  if (pad_h < 0 || pad_w < 0) return problem(kBadParam, "cudnnSetConvolution2dDescriptor: negative padding");
  c->pad_h = pad_h;
  c->pad_w = pad_w;
  c->set = true;
  return 0;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t math) {
  Conv* c = convs.find(d);
  if (!c) return problem(kBadParam, "cudnnSetConvolutionMathType: invalid descriptor");
  c->math = math;
  return 0;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                   cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                                                   cudnnTensorDescriptor_t y, int requested, int* returned,
                                                   cudnnConvolutionFwdAlgoPerf_t* results) {
  if (!handles.find(handle)) return problem(kBadParam, "cudnnFindConvolutionForwardAlgorithm: invalid handle");
  if (nst::emu::capturing())
    return problem(kNotSupported, "cudnnFindConvolutionForwardAlgorithm during stream capture");
  ConvShape sh;
  if (cudnnStatus_t s = resolve("cudnnFindConvolutionForwardAlgorithm", x, w, conv, y, &sh)) return s;
  report_algorithms(requested, returned, results, sh.conv.math);
  return 0;
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t handle, cudnnFilterDescriptor_t w,
                                                        cudnnTensorDescriptor_t dy, cudnnConvolutionDescriptor_t conv,
                                                        cudnnTensorDescriptor_t dx, int requested, int* returned,
                                                        cudnnConvolutionBwdDataAlgoPerf_t* results) {
  if (!handles.find(handle)) return problem(kBadParam, "cudnnFindConvolutionBackwardDataAlgorithm: invalid handle");
  if (nst::emu::capturing())
    return problem(kNotSupported, "cudnnFindConvolutionBackwardDataAlgorithm during stream capture");
  ConvShape sh;
  if (cudnnStatus_t s = resolve("cudnnFindConvolutionBackwardDataAlgorithm", dx, w, conv, dy, &sh)) return s;
  report_algorithms(requested, returned, results, sh.conv.math);
  return 0;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, cudnnTensorDescriptor_t xd,
                                      const void* x, cudnnFilterDescriptor_t wd, const void* w,
                                      cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo, void* workspace,
                                      size_t workspace_bytes, const void* beta, cudnnTensorDescriptor_t yd, void* y) {
  const char* call = "cudnnConvolutionForward";
  ConvShape sh;
  if (cudnnStatus_t s = resolve(call, xd, wd, cd, yd, &sh)) return s;
  if (cudnnStatus_t s = check_workspace(call, algo, workspace, workspace_bytes)) return s;
  std::string why = check_range(x, sh.x.bytes(), "x");
  if (why.empty()) why = check_range(w, sh.w.bytes(), "filter");
  if (why.empty()) why = check_range(y, sh.y.bytes(), "y");
  if (!why.empty()) return problem(kBadParam, std::string(call) + ": " + why);
  // alpha and beta are host values read at the call, as cuDNN does.
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  auto xp = static_cast<const float*>(x), wp = static_cast<const float*>(w);
  auto yp = static_cast<float*>(y);
  return queue(handle, call, [sh, a, xp, wp, b, yp] { forward(sh, a, xp, wp, b, yp); });
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha, cudnnFilterDescriptor_t wd,
                                           const void* w, cudnnTensorDescriptor_t dyd, const void* dy,
                                           cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdDataAlgo_t algo,
                                           void* workspace, size_t workspace_bytes, const void* beta,
                                           cudnnTensorDescriptor_t dxd, void* dx) {
  const char* call = "cudnnConvolutionBackwardData";
  ConvShape sh;
  if (cudnnStatus_t s = resolve(call, dxd, wd, cd, dyd, &sh)) return s;
  if (algo >= kCudnnBwdDataAlgoCount) return problem(kBadParam, std::string(call) + ": algorithm does not exist");
  if (cudnnStatus_t s = check_workspace(call, algo, workspace, workspace_bytes)) return s;
  std::string why = check_range(dy, sh.y.bytes(), "dy");
  if (why.empty()) why = check_range(w, sh.w.bytes(), "filter");
  if (why.empty()) why = check_range(dx, sh.x.bytes(), "dx");
  if (!why.empty()) return problem(kBadParam, std::string(call) + ": " + why);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  auto wp = static_cast<const float*>(w), dyp = static_cast<const float*>(dy);
  auto dxp = static_cast<float*>(dx);
  return queue(handle, call, [sh, a, wp, dyp, b, dxp] { backward_data(sh, a, wp, dyp, b, dxp); });
}

cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t* d) {
  *d = reinterpret_cast<cudnnActivationDescriptor_t>(activations.make());
  return 0;
}
cudnnStatus_t cudnnDestroyActivationDescriptor(cudnnActivationDescriptor_t d) {
  return activations.drop(d) ? 0 : problem(kBadParam, "cudnnDestroyActivationDescriptor: invalid descriptor");
}
cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t d, cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t, double) {
  Activation* a = activations.find(d);
  if (!a) return problem(kBadParam, "cudnnSetActivationDescriptor: invalid descriptor");
  if (mode != CUDNN_ACTIVATION_RELU && mode != CUDNN_ACTIVATION_IDENTITY)
    return problem(kNotSupported, "cudnnSetActivationDescriptor: RELU or IDENTITY only");
  a->mode = mode;
  return 0;
}

cudnnStatus_t cudnnConvolutionBiasActivationForward(
    cudnnHandle_t handle, const void* alpha1, cudnnTensorDescriptor_t xd, const void* x, cudnnFilterDescriptor_t wd,
    const void* w, cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo, void* workspace,
    size_t workspace_bytes, const void* alpha2, cudnnTensorDescriptor_t zd, const void* z,
    cudnnTensorDescriptor_t biasd, const void* bias, cudnnActivationDescriptor_t ad, cudnnTensorDescriptor_t yd,
    void* y) {
  const char* call = "cudnnConvolutionBiasActivationForward";
  ConvShape sh;
  if (cudnnStatus_t s = resolve(call, xd, wd, cd, yd, &sh)) return s;
  if (cudnnStatus_t s = check_workspace(call, algo, workspace, workspace_bytes)) return s;
  Tensor *zt = tensors.find(zd), *bt = tensors.find(biasd);
  Activation* act = activations.find(ad);
  if (!zt || !bt || !act) return problem(kBadParam, std::string(call) + ": invalid z, bias or activation descriptor");
  if (zt->n != sh.y.n || zt->c != sh.y.c || zt->h != sh.y.h || zt->w != sh.y.w)
    return problem(kBadParam, std::string(call) + ": z differs from y in shape");
  if (bt->n != 1 || bt->c != sh.y.c || bt->h != 1 || bt->w != 1)
    return problem(kBadParam, std::string(call) + ": bias must be 1 x K x 1 x 1");
  if (act->mode == CUDNN_ACTIVATION_IDENTITY && algo != kCudnnFwdAlgoImplicitPrecompGemm) {
    return problem(kNotSupported, std::string(call) + ": IDENTITY activation needs IMPLICIT_PRECOMP_GEMM");
  }
  std::string why = check_range(x, sh.x.bytes(), "x");
  if (why.empty()) why = check_range(w, sh.w.bytes(), "filter");
  if (why.empty()) why = check_range(z, zt->bytes(), "z");
  if (why.empty()) why = check_range(bias, bt->bytes(), "bias");
  if (why.empty()) why = check_range(y, sh.y.bytes(), "y");
  if (!why.empty()) return problem(kBadParam, std::string(call) + ": " + why);
  const float a1 = *static_cast<const float*>(alpha1), a2 = *static_cast<const float*>(alpha2);
  const bool relu = act->mode == CUDNN_ACTIVATION_RELU;
  auto xp = static_cast<const float*>(x), wp = static_cast<const float*>(w), zp = static_cast<const float*>(z),
       bp = static_cast<const float*>(bias);
  auto yp = static_cast<float*>(y);
  return queue(handle, call,
               [sh, a1, xp, wp, yp, bp, relu, a2, zp] { forward(sh, a1, xp, wp, 0.f, yp, bp, relu, a2, zp); });
}

}  // extern "C"
