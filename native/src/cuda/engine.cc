// The CUDA engine (nst::make_cuda_engine): finds the GPU, loads cuDNN and
// cuBLAS at run time, owns the weights; sessions (session.cc) do the work.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/network.h"
#include "cuda/session.h"
#include "cuda/tile_session.h"
#include "engine.h"

namespace nst {
namespace cuda {
namespace {

std::string version_text(size_t v, bool cudnn) {
  // cuDNN 9: major*10000 + minor*100 + patch; cuDNN 8: major*1000 + ...;
  // cuBLAS 12+: major*10000 + minor*100 + patch.
  size_t major_unit = (cudnn && v < 90000) ? 1000 : 10000;
  return std::to_string(v / major_unit) + "." + std::to_string((v % major_unit) / 100) + "." + std::to_string(v % 100);
}

class CudaEngine : public Engine {
 public:
  explicit CudaEngine(std::shared_ptr<DeviceContext> ctx) : ctx_(std::move(ctx)) {}

  std::string describe() const override {
    int blas_version = 0;
    ctx_->api.cublasGetVersion_v2(ctx_->cublas, &blas_version);
    return "cuda (" + ctx_->device_name + ", cuDNN " + version_text(ctx_->api.cudnnGetVersion(), true) + ", cuBLAS " +
           version_text(size_t(blas_version), false) + ", " + (ctx_->tf32 ? "tf32" : "fp32") +
           (ctx_->fused_conv ? ", fused conv+bias+relu" : "") + ")";
  }

  void set_weights(const std::vector<ConvWeightsView>& layers) override {
    ctx_->activate();
    if (layers.empty() || layers.size() > 16) throw Error("cuda: set_weights needs 1 to 16 conv layers");
    std::vector<DeviceContext::Layer> uploaded;
    for (size_t i = 0; i < layers.size(); i++) {
      const ConvWeightsView& w = layers[i];
      if (w.in_channels != kVgg19[i].in_channels || w.out_channels != kVgg19[i].out_channels) {
        throw Error(std::string("cuda: weights of ") + kVgg19[i].name + " are " + std::to_string(w.in_channels) + "->" +
                    std::to_string(w.out_channels) + " channels, VGG-19 has " + std::to_string(kVgg19[i].in_channels) +
                    "->" + std::to_string(kVgg19[i].out_channels));
      }
      uploaded.push_back(upload_layer(w));
    }
    ctx_->sync("set_weights");
    ctx_->layers = std::move(uploaded);
    ctx_->weights_version++;
  }

  std::unique_ptr<Session> create_session(const SessionConfig& config) override {
    if (ctx_->layers.empty()) throw Error("cuda: create_session before set_weights");
    return make_session(ctx_, config);
  }

  double estimate_memory(const SessionConfig& config, const std::vector<ImageSize>& style_sizes,
                         const MaskShape& masks) const override {
    return job_bytes(config, style_sizes, ctx_->fused_conv, masks);
  }

  std::unique_ptr<TileSession> create_tile_session(const TileSessionConfig& config) override {
    if (ctx_->layers.empty()) throw Error("cuda: create_tile_session before set_weights");
    return make_tile_session(ctx_, config);
  }

  TileMemory estimate_tile_memory(const TileSessionConfig& config,
                                  const std::vector<ImageSize>& tile_shapes) const override {
    return tile_memory(config, tile_shapes, ctx_->fused_conv);
  }

  std::optional<double> device_memory_available() const override {
    ctx_->activate();
    size_t free_bytes = 0, total_bytes = 0;
    check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    return double(free_bytes);
  }

 private:
  // HWIO (Keras) -> KRSC (cuDNN NHWC filter: out, row, col, in).
  DeviceContext::Layer upload_layer(const ConvWeightsView& w) {
    const int in = w.in_channels, out = w.out_channels;
    std::vector<float> krsc(size_t(9) * in * out);
    for (int o = 0; o < out; o++)
      for (int rs = 0; rs < 9; rs++)
        for (int i = 0; i < in; i++) krsc[(size_t(o) * 9 + rs) * in + i] = w.kernel[(size_t(rs) * in + i) * out + o];
    DeviceContext::Layer layer;
    layer.kernel = DeviceBuffer(krsc.size() * 4, "conv kernels");
    layer.bias = DeviceBuffer(size_t(out) * 4, "conv biases");
    // On our stream (a non-blocking one, which the legacy default stream
    // does not order against), then synchronised: krsc is a local.
    check_cuda(cudaMemcpyAsync(layer.kernel.get(), krsc.data(), krsc.size() * 4, cudaMemcpyHostToDevice, ctx_->stream),
               "cudaMemcpyAsync (conv kernels)");
    check_cuda(cudaMemcpyAsync(layer.bias.get(), w.bias, size_t(out) * 4, cudaMemcpyHostToDevice, ctx_->stream),
               "cudaMemcpyAsync (conv biases)");
    ctx_->sync("set_weights");
    layer.filter = std::make_unique<FilterDesc>(ctx_->api, out, in);
    return layer;
  }

  std::shared_ptr<DeviceContext> ctx_;
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Engine> make_cuda_engine(const CudaOptions& options) {
  using namespace cuda;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    cudaGetLastError();
    // Without libcuda the runtime reports "driver version is insufficient":
    // say plainly that there is no driver.
    void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver) dlclose(driver);
    throw Error(ErrorCode::Unsupported, "backend",
                std::string("cuda: no usable GPU (cudaGetDeviceCount: ") +
                    (status != cudaSuccess ? cudaGetErrorString(status) : "0 devices") +
                    (driver ? "" : "; no NVIDIA driver: libcuda.so.1 not found") + ")");
  }
  if (options.device < 0 || options.device >= count) {
    throw Error(
        ErrorCode::NotFound, "gpu",
        "cuda: GPU " + std::to_string(options.device) + " requested but " + std::to_string(count) + " GPU(s) found");
  }
  const DnnApi& api = load_dnn_api();
  auto ctx = std::make_shared<DeviceContext>(api);
  ctx->device = options.device;
  ctx->tf32 = options.precision == Precision::Tf32;
  check_cuda(cudaSetDevice(options.device), "cudaSetDevice");
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, options.device), "cudaGetDeviceProperties");
  ctx->device_name = prop.name;
  if (prop.major < 8) {
    throw Error(ErrorCode::Unsupported, "backend",
                std::string("cuda: ") + prop.name + " has compute capability " + std::to_string(prop.major) + "." +
                    std::to_string(prop.minor) + "; this build needs 8.0 or newer");
  }
  check_cuda(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cudnn(api, api.cudnnCreate(&ctx->cudnn), "cudnnCreate");
  check_cudnn(api, api.cudnnSetStream(ctx->cudnn, ctx->stream), "cudnnSetStream");
  check_cudnn(api, api.cudnnCreateActivationDescriptor(&ctx->relu), "cudnnCreateActivationDescriptor");
  check_cudnn(api, api.cudnnSetActivationDescriptor(ctx->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
              "cudnnSetActivationDescriptor");
  const char* fused = std::getenv("NST_CUDA_FUSED_CONV");
  ctx->fused_conv = fused && *fused && *fused != '0';
  check_cublas(api, api.cublasCreate_v2(&ctx->cublas), "cublasCreate");
  check_cublas(api, api.cublasSetStream_v2(ctx->cublas, ctx->stream), "cublasSetStream");
  ctx->cublas_workspace = DeviceBuffer(kCublasWorkspace, "cuBLAS workspace");
  // A fixed workspace: cuBLAS allocates nothing during graph capture.
  check_cublas(api, api.cublasSetWorkspace_v2(ctx->cublas, ctx->cublas_workspace.get(), kCublasWorkspace),
               "cublasSetWorkspace");
  check_cublas(api, api.cublasSetMathMode(ctx->cublas, ctx->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH),
               "cublasSetMathMode");
  return std::make_unique<CudaEngine>(ctx);
}

}  // namespace nst
