// cuDNN 3x3 SAME convolutions in NHWC: descriptors, algorithm choice with
// cudnnFind* cached per shape, and the forward / backward-data calls.
#pragma once

#include <map>
#include <memory>

#include "cuda/conv_key.h"
#include "cuda/dnn_api.h"
#include "cuda/geometry.h"

namespace nst::cuda {

// Owning wrappers of cuDNN descriptors (destroyed through the loaded API).
class TensorDesc {
 public:
  TensorDesc(const DnnApi& api, int batch, int channels, int height, int width);
  ~TensorDesc();
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  const DnnApi& api_;
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc(const DnnApi& api, int out_channels, int in_channels);  // KRSC, 3x3
  ~FilterDesc();
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  const DnnApi& api_;
  cudnnFilterDescriptor_t desc_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc(const DnnApi& api, cudnnMathType_t math);  // pad 1, stride 1, cross-correlation, fp32
  ~ConvDesc();
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return desc_; }

 private:
  const DnnApi& api_;
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

struct AlgoChoice {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

// Picks the fastest algorithm cudnnFind* reports that succeeded, fits
// kWorkspaceCap and respects the precision (fp32: no tensor-op math; never
// the fp16-converting math), once per shape.
class AlgoCache {
 public:
  AlgoChoice choose(const DnnApi& api, cudnnHandle_t handle, const ConvKey& key, bool tf32);

 private:
  std::map<ConvKey, AlgoChoice> cache_;
};

// One conv layer at one (batch, height, width): descriptors and algorithms.
// With `fused`, the forward runs cudnnConvolutionBiasActivationForward
// (conv + bias + ReLU in one call; cuDNN requires IMPLICIT_PRECOMP_GEMM only
// for IDENTITY, but we pin it for ReLU too: the fused path is experimental and
// that is the algorithm cuDNN documents for every fused activation), else
// cudnnConvolutionForward and our bias+ReLU kernel.
struct ConvPlan {
  ConvPlan(const DnnApi& api, cudnnHandle_t handle, AlgoCache& cache, bool tf32, int batch, const LayerGeometry& g,
           bool backward, bool fused);
  TensorDesc x, y, bias;  // bias: 1 x C x 1 x 1
  bool fused;
  AlgoChoice fwd, bwd;
  std::unique_ptr<ConvDesc> fwd_conv, bwd_conv;
  size_t workspace() const { return fwd.workspace > bwd.workspace ? fwd.workspace : bwd.workspace; }
};

}  // namespace nst::cuda
