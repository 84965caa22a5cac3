#include "cuda/conv.h"

#include <cstdio>

#include "cuda/check.h"
#include "cuda/memory_plan.h"

namespace nst::cuda {

TensorDesc::TensorDesc(const DnnApi& api, int batch, int channels, int height, int width) : api_(api) {
  check_cudnn(api, api.cudnnCreateTensorDescriptor(&desc_), "cudnnCreateTensorDescriptor");
  check_cudnn(
      api, api.cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, batch, channels, height, width),
      "cudnnSetTensor4dDescriptor");
}
TensorDesc::~TensorDesc() { api_.cudnnDestroyTensorDescriptor(desc_); }

FilterDesc::FilterDesc(const DnnApi& api, int out_channels, int in_channels) : api_(api) {
  check_cudnn(api, api.cudnnCreateFilterDescriptor(&desc_), "cudnnCreateFilterDescriptor");
  check_cudnn(
      api, api.cudnnSetFilter4dDescriptor(desc_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, out_channels, in_channels, 3, 3),
      "cudnnSetFilter4dDescriptor");
}
FilterDesc::~FilterDesc() { api_.cudnnDestroyFilterDescriptor(desc_); }

ConvDesc::ConvDesc(const DnnApi& api, cudnnMathType_t math) : api_(api) {
  check_cudnn(api, api.cudnnCreateConvolutionDescriptor(&desc_), "cudnnCreateConvolutionDescriptor");
  // TF's conv2d is a cross-correlation; SAME for a 3x3 stride-1 kernel is pad 1.
  check_cudnn(api,
              api.cudnnSetConvolution2dDescriptor(desc_, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor");
  check_cudnn(api, api.cudnnSetConvolutionMathType(desc_, math), "cudnnSetConvolutionMathType");
}
ConvDesc::~ConvDesc() { api_.cudnnDestroyConvolutionDescriptor(desc_); }

namespace {

// Whether a found algorithm may run under our precision, at a given level of
// strictness, and with which math; false = reject.
// tf32: anything but the math that may convert to fp16.
// fp32 is the accuracy mode (parity with the cpu engine): always executed as
// plain FP32 FMA. Tier 0 takes only results cuDNN reports as FMA math and no
// FFT/Winograd algorithm (their transforms cost accuracy); tier 1 also takes
// DEFAULT-math results; tier 2, the last resort, FFT/Winograd too.
bool acceptable(int algo, bool is_forward, cudnnMathType_t reported, bool tf32, int tier, cudnnMathType_t* use) {
  if (reported == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  if (tf32) {
    *use = reported;
    return true;
  }
  // Forward 4..7 and backward-data 2..5 are FFT, FFT_TILING, WINOGRAD, WINOGRAD_NONFUSED.
  bool transform = algo >= (is_forward ? 4 : 2);
  if (reported == CUDNN_TENSOR_OP_MATH || (tier == 0 && reported != CUDNN_FMA_MATH) || (tier < 2 && transform)) {
    return false;
  }
  *use = CUDNN_FMA_MATH;  // pin plain FP32 (DEFAULT would allow TF32)
  return true;
}

// `only_algo` >= 0 restricts the choice to that algorithm.
template <typename Perf>
AlgoChoice pick(const Perf* results, int count, bool tf32, bool is_forward, int only_algo, const char* what) {
  for (int tier = 0; tier < 3; tier++) {
    for (int i = 0; i < count; i++) {  // cuDNN sorts by time, fastest first
      const Perf& r = results[i];
      cudnnMathType_t math;
      if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kWorkspaceCap) continue;
      if (only_algo >= 0 && r.algo != only_algo) continue;
      if (!acceptable(r.algo, is_forward, r.mathType, tf32, tier, &math)) continue;
      return {r.algo, r.memory, math};
    }
  }
  throw Error(std::string("cuda: ") + what + ": cuDNN found no usable algorithm (" + std::to_string(count) +
              " tried, workspace cap " + std::to_string(kWorkspaceCap) + " bytes)");
}

}  // namespace

AlgoChoice AlgoCache::choose(const DnnApi& api, cudnnHandle_t handle, const ConvKey& key, bool tf32) {
  auto hit = cache_.find(key);
  if (hit != cache_.end()) return hit->second;
  TensorDesc x(api, key.batch, key.in_channels, key.height, key.width);
  TensorDesc y(api, key.batch, key.out_channels, key.height, key.width);
  FilterDesc w(api, key.out_channels, key.in_channels);
  ConvDesc conv(api, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  AlgoChoice choice;
  int returned = 0;
  if (key.direction != ConvDirection::BackwardData) {
    cudnnConvolutionFwdAlgoPerf_t results[kCudnnFwdAlgoCount * 2];
    check_cudnn(api,
                api.cudnnFindConvolutionForwardAlgorithm(handle, x.get(), w.get(), conv.get(), y.get(),
                                                         kCudnnFwdAlgoCount * 2, &returned, results),
                "cudnnFindConvolutionForwardAlgorithm");
    int only = key.direction == ConvDirection::FusedForward ? kCudnnFwdAlgoImplicitPrecompGemm : -1;
    choice = pick(results, returned, tf32, true, only, "cudnnFindConvolutionForwardAlgorithm");
  } else {
    cudnnConvolutionBwdDataAlgoPerf_t results[kCudnnBwdDataAlgoCount * 2];
    check_cudnn(api,
                api.cudnnFindConvolutionBackwardDataAlgorithm(handle, w.get(), y.get(), conv.get(), x.get(),
                                                              kCudnnBwdDataAlgoCount * 2, &returned, results),
                "cudnnFindConvolutionBackwardDataAlgorithm");
    choice = pick(results, returned, tf32, false, -1, "cudnnFindConvolutionBackwardDataAlgorithm");
  }
  if (verbose()) {
    std::fprintf(stderr, "nst cuda: %s %dx%dx%d %d->%d: algo %d, math %d, workspace %zu bytes (%d candidates)\n",
                 key.direction == ConvDirection::Forward        ? "conv forward"
                 : key.direction == ConvDirection::FusedForward ? "conv+bias+relu forward"
                                                                : "conv backward-data",
                 key.batch, key.height, key.width, key.in_channels, key.out_channels, choice.algo, int(choice.math),
                 choice.workspace, returned);
  }
  cache_[key] = choice;
  return choice;
}

ConvPlan::ConvPlan(const DnnApi& api, cudnnHandle_t handle, AlgoCache& cache, bool tf32, int batch,
                   const LayerGeometry& g, bool backward, bool fused_)
    : x(api, batch, g.in_channels, g.height, g.width),
      y(api, batch, g.out_channels, g.height, g.width),
      bias(api, 1, g.out_channels, 1, 1),
      fused(fused_) {
  ConvDirection forward = fused ? ConvDirection::FusedForward : ConvDirection::Forward;
  ConvKey key{batch, g.height, g.width, g.in_channels, g.out_channels, tf32 ? 1 : 0, forward};
  fwd = cache.choose(api, handle, key, tf32);
  fwd_conv = std::make_unique<ConvDesc>(api, fwd.math);
  if (backward) {
    key.direction = ConvDirection::BackwardData;
    bwd = cache.choose(api, handle, key, tf32);
    bwd_conv = std::make_unique<ConvDesc>(api, bwd.math);
  }
}

}  // namespace nst::cuda
