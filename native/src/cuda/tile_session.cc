// The CUDA engine's tile session. Each tile runs in a Pass of its extended
// region's shape with two gradient buffers (as a session's, session.cc), its
// pixels and their gradient; the loss terms count the core's positions only:
//   pass 1: G_l = A_l^T A_l over the core (the map masked to the core, in a
//           gradient buffer that is free during the forward, then cuBLAS);
//           the content loss of the core (core_content_loss)
//   pass 2: as a session's backward, but g += coef_l A_l with A_l masked to
//           the core (into the gradient buffer the step has not used yet),
//           and the content term only on the core (core_relu_backward).
// Everything runs eagerly on the engine's stream (no graph: the tile changes
// every call).
#include "cuda/tile_session.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/memory_plan.h"
#include "session_config.h"
#include "tile_geometry.h"
#include "tile_pool.h"

namespace nst::cuda {
namespace {

struct TileNet {
  std::unique_ptr<Pass> pass;
  DeviceBuffer grad[2];
  DeviceBuffer x, dx;
  DeviceBuffer content_cache;  // the core's content targets, when they came as pixels
};

class CudaTileSession : public TileSession {
 public:
  CudaTileSession(std::shared_ptr<DeviceContext> ctx, const TileSessionConfig& config)
      : ctx_(std::move(ctx)), config_(config), pool_(config.net_budget_bytes) {
    ctx_->activate();
    num_layers_ = deepest_layer(config_.loss) + 1;
    if (num_layers_ > int(ctx_->layers.size()))
      throw Error("cuda: the tile session needs " + std::to_string(num_layers_) + " conv layers but only " +
                  std::to_string(ctx_->layers.size()) + " are loaded");
    check_memory();
    for (const auto& s : config_.loss.style) {
      const size_t c = kVgg19[s.conv_index].out_channels;
      grams_.emplace_back(c * c * sizeof(float), "tile Gram sums");
      coefficients_.emplace_back(c * c * sizeof(float), "tile style coefficients");
    }
    for (const auto& c : config_.loss.content) {
      targets_.emplace_back(sizeof(float) * layer_extent(config_.max_tile_height, c.conv_index) *
                                layer_extent(config_.max_tile_width, c.conv_index) * kVgg19[c.conv_index].out_channels,
                            "tile content targets");
    }
    losses_ = DeviceBuffer(sizeof(double) * kernels::kLossSlots, "tile loss");
    check_cuda(cudaMallocHost(&host_loss_, sizeof(double) * kernels::kLossSlots), "cudaMallocHost (tile loss)");
  }

  ~CudaTileSession() override {
    if (host_loss_) cudaFreeHost(host_loss_);
  }

  void gram_sums(const TileGeometry& tile, const float* pixels, const std::vector<float*>& grams) override {
    check(tile, "gramSums");
    bool hit = false;
    NetPool<TileNet>::Entry& e = acquire(tile, 0, hit);
    run_forward(*e.net, e.net->x, pixels);
    core_grams(*e.net, tile, grams);
    ctx_->sync("tile gramSums");
  }

  void content_activations(const TileGeometry& tile, const float* pixels, const std::vector<float*>& out) override {
    check(tile, "contentActivations");
    bool hit = false;
    NetPool<TileNet>::Entry& e = acquire(tile, 0, hit);
    run_forward(*e.net, e.net->x, pixels);
    for (size_t k = 0; k < config_.loss.content.size(); k++) {
      const int layer = config_.loss.content[k].conv_index;
      const kernels::CoreRect c = core_rect(tile, layer);
      const LayerGeometry& g = e.net->pass->geometry[layer];
      kernels::launch_gather_core(e.net->pass->acts[layer].f(), targets_[k].f(), g.height, g.width, g.out_channels, c,
                                  ctx_->stream);
      check_launch("gather_core kernel");
      check_cuda(cudaMemcpyAsync(out[k], targets_[k].get(), core_floats(c, layer) * sizeof(float),
                                 cudaMemcpyDeviceToHost, ctx_->stream),
                 "cudaMemcpyAsync (content activations)");
    }
    ctx_->sync("tile contentActivations");
  }

  double forward(const TileGeometry& tile, const float* pixels, const TileContent& content, uint64_t tag,
                 const std::vector<float*>& grams) override {
    check(tile, "forward");
    bool hit = false;
    NetPool<TileNet>::Entry& e = acquire(tile, tag, hit);
    std::vector<const float*> targets = prepare(e, tile, pixels, content);
    e.tag = tag;
    core_grams(*e.net, tile, grams);
    check_cuda(cudaMemsetAsync(losses_.get(), 0, losses_.bytes(), ctx_->stream), "cudaMemsetAsync (tile loss)");
    double* loss = static_cast<double*>(losses_.get()) + kernels::kContentSlot;
    for (size_t k = 0; k < config_.loss.content.size(); k++) {
      const int layer = config_.loss.content[k].conv_index;
      const LayerGeometry& g = e.net->pass->geometry[layer];
      const double coef =
          config_.loss.content[k].weight / (4.0 * image_positions(tile, layer) * double(g.out_channels));
      kernels::launch_core_content_loss(e.net->pass->acts[layer].f(), targets[k], g.height, g.width, g.out_channels,
                                        core_rect(tile, layer), float(coef), loss, ctx_->stream);
      check_launch("core_content_loss kernel");
    }
    check_cuda(cudaMemcpyAsync(host_loss_, losses_.get(), losses_.bytes(), cudaMemcpyDeviceToHost, ctx_->stream),
               "cudaMemcpyAsync (tile loss)");
    ctx_->sync("tile forward");
    return host_loss_[kernels::kContentSlot];
  }

  void backward(const TileGeometry& tile, const float* pixels, const TileContent& content, uint64_t tag,
                const std::vector<const float*>& style_coefficients, float* gradient_out) override {
    check(tile, "backward");
    bool hit = false;
    NetPool<TileNet>::Entry& e = acquire(tile, tag, hit);
    std::vector<const float*> targets = hit ? cached_targets(e, tile, content) : prepare(e, tile, pixels, content);
    if (hit) stats_.forwards_reused++;
    e.tag = 0;
    for (size_t l = 0; l < config_.loss.style.size(); l++) {
      check_cuda(cudaMemcpyAsync(coefficients_[l].get(), style_coefficients[l], coefficients_[l].bytes(),
                                 cudaMemcpyHostToDevice, ctx_->stream),
                 "cudaMemcpyAsync (style coefficients)");
    }
    backpropagate(*e.net, tile, targets);
    check_cuda(cudaMemcpyAsync(gradient_out, e.net->dx.get(), image_bytes(tile), cudaMemcpyDeviceToHost, ctx_->stream),
               "cudaMemcpyAsync (tile gradient)");
    ctx_->sync("tile backward");
  }

  TileStats stats() const override { return pool_stats(stats_, pool_); }

 private:
  void check(const TileGeometry& tile, const char* op) const {
    const std::string problem =
        tile_geometry_problem(tile, num_layers_ - 1, config_.max_tile_height, config_.max_tile_width);
    if (!problem.empty()) throw Error(std::string("cuda: tile ") + op + ": " + problem);
    ctx_->activate();
  }

  // Before anything is allocated: the session's fixed buffers and its largest net against the free memory.
  void check_memory() const {
    const double needed =
        tile_session_bytes(config_, {{config_.max_tile_height, config_.max_tile_width}}, ctx_->fused_conv);
    size_t free_bytes = 0, total_bytes = 0;
    check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    if (needed > double(free_bytes)) {
      throw Error::too_large("size", needed, double(free_bytes),
                             "cuda: a tile session of " + std::to_string(config_.max_tile_width) + "x" +
                                 std::to_string(config_.max_tile_height) + " tiles needs " +
                                 std::to_string(size_t(needed)) + " bytes but " + std::to_string(free_bytes) +
                                 " are free on " + ctx_->device_name);
    }
  }

  static size_t image_bytes(const TileGeometry& tile) {
    return size_t(tile.extended.height()) * tile.extended.width() * 3 * sizeof(float);
  }

  static kernels::CoreRect core_rect(const TileGeometry& tile, int layer) {
    const PixelRect c = core_at_layer(tile, layer);
    return {c.y0, c.y1, c.x0, c.x1};
  }

  static size_t core_floats(const kernels::CoreRect& c, int layer) {
    return size_t(c.y1 - c.y0) * (c.x1 - c.x0) * kVgg19[layer].out_channels;
  }

  static double image_positions(const TileGeometry& tile, int layer) {
    return double(layer_extent(tile.image_height, layer)) * layer_extent(tile.image_width, layer);
  }

  NetPool<TileNet>::Entry& acquire(const TileGeometry& tile, uint64_t tag, bool& hit) {
    const ImageSize shape{tile.extended.height(), tile.extended.width()};
    auto make = [&] {
      auto n = std::make_unique<TileNet>();
      n->pass = std::make_unique<Pass>(*ctx_, 1, shape.height, shape.width, num_layers_, true);
      size_t largest = 0;
      for (const LayerGeometry& g : n->pass->geometry)
        largest = std::max(largest, size_t(g.height) * g.width * std::max(g.in_channels, g.out_channels));
      n->grad[0] = DeviceBuffer(largest * sizeof(float), "tile gradient buffer");
      n->grad[1] = DeviceBuffer(largest * sizeof(float), "tile gradient buffer");
      n->x = DeviceBuffer(size_t(shape.height) * shape.width * 3 * sizeof(float), "tile pixels");
      n->dx = DeviceBuffer(n->x.bytes(), "tile pixel gradient");
      size_t cache = 0;
      for (const auto& c : config_.loss.content) cache += n->pass->map_floats(c.conv_index);
      n->content_cache = DeviceBuffer(cache * sizeof(float), "tile content targets");
      ensure_workspace(n->pass->workspace());
      return n;
    };
    return pool_.acquire(shape, tag, tile_net_bytes(config_, shape, ctx_->fused_conv), make, hit);
  }

  void ensure_workspace(size_t bytes) {
    if (bytes <= workspace_.bytes()) return;
    ctx_->sync("tile workspace resize");
    workspace_ = DeviceBuffer();
    workspace_ = DeviceBuffer(bytes, "cuDNN workspace");
  }

  bool max_pool() const { return config_.pooling == Pooling::Max; }

  void run_forward(TileNet& net, DeviceBuffer& into, const float* pixels) {
    check_cuda(cudaMemcpyAsync(into.get(), pixels, into.bytes(), cudaMemcpyHostToDevice, ctx_->stream),
               "cudaMemcpyAsync (tile pixels)");
    net.pass->forward(*ctx_, into.f(), num_layers_, workspace_.get(), workspace_.bytes(), max_pool());
    stats_.forwards++;
  }

  // Forwards the tile (after the content tile when the content comes as
  // pixels, whose core targets the net keeps); the content targets' device
  // pointers.
  std::vector<const float*> prepare(NetPool<TileNet>::Entry& e, const TileGeometry& tile, const float* pixels,
                                    const TileContent& content) {
    TileNet& net = *e.net;
    if (!config_.loss.content.empty() && content.targets.empty()) {
      if (!content.pixels) throw Error("cuda: tile: no content targets and no content pixels");
      run_forward(net, net.x, content.pixels);
      float* out = net.content_cache.f();
      for (const auto& l : config_.loss.content) {
        const LayerGeometry& g = net.pass->geometry[l.conv_index];
        const kernels::CoreRect c = core_rect(tile, l.conv_index);
        kernels::launch_gather_core(net.pass->acts[l.conv_index].f(), out, g.height, g.width, g.out_channels, c,
                                    ctx_->stream);
        check_launch("gather_core kernel");
        out += core_floats(c, l.conv_index);
      }
    }
    run_forward(net, net.x, pixels);
    return cached_targets(e, tile, content);
  }

  std::vector<const float*> cached_targets(NetPool<TileNet>::Entry& e, const TileGeometry& tile,
                                           const TileContent& content) {
    std::vector<const float*> targets;
    if (config_.loss.content.empty()) return targets;
    if (!content.targets.empty()) {
      // Into the session's upload buffers (again on a hit in pass 2: other tiles used them since).
      for (size_t k = 0; k < content.targets.size(); k++) {
        const kernels::CoreRect c = core_rect(tile, config_.loss.content[k].conv_index);
        check_cuda(cudaMemcpyAsync(targets_[k].get(), content.targets[k],
                                   core_floats(c, config_.loss.content[k].conv_index) * sizeof(float),
                                   cudaMemcpyHostToDevice, ctx_->stream),
                   "cudaMemcpyAsync (tile content targets)");
        targets.push_back(targets_[k].f());
      }
      return targets;
    }
    const float* at = e.net->content_cache.f();
    for (const auto& l : config_.loss.content) {
      targets.push_back(at);
      at += core_floats(core_rect(tile, l.conv_index), l.conv_index);
    }
    return targets;
  }

  // grams[l] (host) = A_l^T A_l over the core: the map masked to the core in
  // a gradient buffer (free during a forward), then one product.
  void core_grams(TileNet& net, const TileGeometry& tile, const std::vector<float*>& grams) {
    for (size_t l = 0; l < config_.loss.style.size(); l++) {
      const int layer = config_.loss.style[l].conv_index;
      const LayerGeometry& g = net.pass->geometry[layer];
      kernels::launch_mask_core(net.pass->acts[layer].f(), net.grad[1].f(), g.height, g.width, g.out_channels,
                                core_rect(tile, layer), ctx_->stream);
      check_launch("mask_core kernel");
      gram(*ctx_, net.grad[1].f(), grams_[l].f(), g.out_channels, (long long)g.height * g.width, 1, 1.f, 0.f);
      check_cuda(cudaMemcpyAsync(grams[l], grams_[l].get(), grams_[l].bytes(), cudaMemcpyDeviceToHost, ctx_->stream),
                 "cudaMemcpyAsync (tile Gram sums)");
    }
  }

  bool has_loss_at(int i) const {
    return entry_at_layer(config_.loss.content, i) >= 0 || entry_at_layer(config_.loss.style, i) >= 0;
  }

  // A session's backward (session.cc) with the loss terms on the core only.
  void backpropagate(TileNet& net, const TileGeometry& tile, const std::vector<const float*>& targets) {
    DeviceContext& ctx = *ctx_;
    const LossSpec& loss = config_.loss;
    Pass& pass = *net.pass;
    const float one = 1.f, zero = 0.f;
    int cur = 0;
    float* g = net.grad[cur].f();
    check_cuda(cudaMemsetAsync(g, 0, pass.map_floats(num_layers_ - 1) * sizeof(float), ctx.stream),
               "cudaMemsetAsync (top gradient)");
    bool g_masked = false;
    for (int i = num_layers_ - 1; i >= 0; i--) {
      const LayerGeometry& geo = pass.geometry[i];
      const float* a = pass.acts[i].f();
      const long long pixels = (long long)geo.height * geo.width;
      const kernels::CoreRect core = core_rect(tile, i);
      if (const int l = entry_at_layer(loss.style, i); l >= 0) {
        // g += coef A_core: A masked to the core in the buffer this step has not used yet.
        float* masked = net.grad[1 - cur].f();
        kernels::launch_mask_core(a, masked, geo.height, geo.width, geo.out_channels, core, ctx.stream);
        check_launch("mask_core kernel");
        check_cublas(ctx.api,
                     ctx.api.cublasSgemmStridedBatched(ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, geo.out_channels,
                                                       int(pixels), geo.out_channels, &one, coefficients_[l].f(),
                                                       geo.out_channels, (long long)geo.out_channels * geo.out_channels,
                                                       masked, geo.out_channels, pixels * geo.out_channels, &one, g,
                                                       geo.out_channels, pixels * geo.out_channels, 1),
                     "cublasSgemmStridedBatched (tile style gradient)");
        g_masked = false;
      }
      if (const int k = entry_at_layer(loss.content, i); k >= 0) {
        const double coef = loss.alpha * loss.content[k].weight / (2.0 * image_positions(tile, i) * geo.out_channels);
        kernels::launch_core_relu_backward(g, a, targets[k], geo.height, geo.width, geo.out_channels, core, float(coef),
                                           0.f, nullptr, ctx.stream);
        check_launch("core_relu_backward kernel");
      } else if (!g_masked) {
        kernels::launch_relu_backward(g, a, nullptr, 0.f, 0.f, nullptr, pass.map_floats(i), 1, ctx.stream);
        check_launch("relu_backward kernel");
      }
      const ConvPlan& conv = *pass.convs[i];
      float* out = i == 0 ? net.dx.f() : net.grad[1 - cur].f();
      check_cudnn(
          ctx.api,
          ctx.api.cudnnConvolutionBackwardData(ctx.cudnn, &one, ctx.layers[i].filter->get(), ctx.layers[i].kernel.get(),
                                               conv.y.get(), g, conv.bwd_conv->get(), conv.bwd.algo, workspace_.get(),
                                               workspace_.bytes(), &zero, conv.x.get(), out),
          "cudnnConvolutionBackwardData (tile)");
      if (i == 0) break;
      const LayerGeometry& below = pass.geometry[i - 1];
      if (below.pool_after) {
        const bool loss_below = has_loss_at(i - 1);
        kernels::launch_pool_backward(out, pass.acts[i - 1].f(), g, 1, below.height, below.width, below.out_channels,
                                      max_pool(), !loss_below, ctx.stream);
        check_launch("pool_backward kernel");
        g_masked = !loss_below;
      } else {
        cur = 1 - cur;
        g = out;
        g_masked = false;
      }
    }
  }

  std::shared_ptr<DeviceContext> ctx_;
  TileSessionConfig config_;
  int num_layers_ = 0;
  NetPool<TileNet> pool_;
  std::vector<DeviceBuffer> grams_, coefficients_, targets_;
  DeviceBuffer losses_, workspace_;
  double* host_loss_ = nullptr;
  TileStats stats_;
};

}  // namespace

std::unique_ptr<TileSession> make_tile_session(std::shared_ptr<DeviceContext> ctx, const TileSessionConfig& config) {
  return std::make_unique<CudaTileSession>(std::move(ctx), config);
}

}  // namespace nst::cuda
