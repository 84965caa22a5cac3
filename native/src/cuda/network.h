// What the engine and its sessions share (DeviceContext: handles, stream, weights,
// algorithm cache) and a forward pass of the VGG-19 prefix at one size (Pass).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/conv.h"
#include "cuda/device_buffer.h"
#include "cuda/dnn_api.h"
#include "cuda/geometry.h"
#include "cuda/memory_plan.h"
#include "cuda/profiler.h"
#include "engine.h"

namespace nst::cuda {

// What engine and sessions share (sessions may outlive the Engine object).
struct DeviceContext {
  const DnnApi& api;
  int device = 0;
  bool tf32 = true;
  std::string device_name;
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnActivationDescriptor_t relu = nullptr;  // for the fused conv+bias+ReLU
  bool fused_conv = false;                     // NST_CUDA_FUSED_CONV=1 (experimental)
  DeviceBuffer cublas_workspace;
  AlgoCache algos;
  Profiler profiler;
  struct Layer {
    DeviceBuffer kernel;  // KRSC (out, 3, 3, in)
    DeviceBuffer bias;
    std::unique_ptr<FilterDesc> filter;
  };
  std::vector<Layer> layers;
  int weights_version = 0;

  explicit DeviceContext(const DnnApi& a) : api(a) {}
  ~DeviceContext() {
    if (relu) api.cudnnDestroyActivationDescriptor(relu);
    if (cublas) api.cublasDestroy_v2(cublas);
    if (cudnn) api.cudnnDestroy(cudnn);
    if (stream) cudaStreamDestroy(stream);
  }
  void sync(const char* what) { check_cuda(cudaStreamSynchronize(stream), what); }
  // The current device is per host thread, and the glue may call us from a
  // worker thread: every entry point selects ours first.
  void activate() { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }
};

// Forward activations of the network prefix at one (batch, height, width).
struct Pass {
  int batch = 0, num_layers = 0;
  std::vector<LayerGeometry> geometry;
  std::vector<std::unique_ptr<ConvPlan>> convs;
  std::vector<DeviceBuffer> acts;    // post-ReLU output of conv i
  std::vector<DeviceBuffer> pooled;  // pool output after conv i (when any)
  // The fused conv's z input, zeroed once (fused path only): cuDNN computes
  // relu(conv + alpha2 * z + bias) and may read z even with alpha2 = 0, so z
  // must hold no NaN (0 * NaN = NaN), which a fresh or earlier map may.
  DeviceBuffer fused_zeros;

  Pass(DeviceContext& ctx, int batch, int height, int width, int layers, bool backward);
  size_t map_floats(int i) const {
    return size_t(batch) * geometry[i].height * geometry[i].width * geometry[i].out_channels;
  }
  size_t workspace() const {
    size_t w = 0;
    for (const auto& c : convs) w = std::max(w, c->workspace());
    return w;
  }
  // Runs conv layers [0, upto) on `input` (batch, h, w, 3).
  void forward(DeviceContext& ctx, const float* input, int upto, void* workspace, size_t workspace_bytes,
               bool max_pool);
};

// G[b] = alpha * A_b^T A_b + beta * G[b] for NHWC maps A (N pixels x c).
void gram(DeviceContext& ctx, const float* a, float* g, int c, long long pixels, int batch, float alpha, float beta);

}  // namespace nst::cuda
