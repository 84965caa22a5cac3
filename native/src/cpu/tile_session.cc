// The cpu engine's tile session: each tile runs in a VggNet of its extended
// region's shape (the image's own border padding where the region meets the
// border, zero padding elsewhere, which the halo keeps away from the core),
// and the loss terms are taken on the core's positions only: the Gram sums
// and the style gradient row by row over the core (dnnl_sgemm), the content
// term and its gradient in the ReLU's backward, fused as in the untiled
// session, restricted to the core (kernels/tile_core.cuh's CPU references).
#include "tile_session.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "../session_config.h"
#include "../tile_geometry.h"
#include "../tile_pool.h"
#include "gram.h"
#include "kernels/relu_backward.cuh"
#include "kernels/tile_core.cuh"

namespace nst::cpu {
namespace {

// The layers the loss reads by position: every content and style layer, kept, NHWC.
LayerReads loss_layers(const LossSpec& loss) {
  const std::vector<bool> layers = loss_layer_flags(loss);
  return {layers, layers};
}

// A tile's net: Winograd on the layers where the whole image (`image`) has it.
VggNetPlan tile_plan(const dnnl::engine& engine, const TileSessionConfig& c, ImageSize shape, ImageSize image) {
  // float32 (a bf16 engine's tiles too: the tile session has no bf16 Gram path yet).
  return {engine,    1,    shape.height,        shape.width,     deepest_layer(c.loss),
          c.pooling, true, loss_layers(c.loss), Precision::Fp32, image};
}

// Floats of the content layers' maps of a tile of `shape`: what a net keeps
// of the content tile it forwarded (the content targets of its core, when
// they come as pixels).
size_t content_cache_floats(const TileSessionConfig& c, ImageSize shape) {
  size_t n = 0;
  for (const auto& l : c.loss.content)
    n += size_t(layer_extent(shape.height, l.conv_index)) * layer_extent(shape.width, l.conv_index) *
         kVgg19[l.conv_index].out_channels;
  return n;
}

// Generated code per primitive, as the untiled estimate counts it (cpu_engine.cc).
constexpr size_t kGeneratedCodeBytes = size_t(192) << 10;

// Floats of each of the two scratch buffers the Gram products over a core
// use (16 MiB: blocks of many rows, one sgemm each; at least one core row).
constexpr size_t kScratchFloats = size_t(1) << 22;

struct TileNet {
  std::unique_ptr<VggNet> net;
  std::vector<float> content_cache;  // the core's content targets, when forwarded from the content's pixels
};

class CpuTileSession : public TileSession {
 public:
  CpuTileSession(const dnnl::engine& engine, std::shared_ptr<CpuWeights> weights, const TileSessionConfig& config)
      : engine_(engine), weights_(std::move(weights)), config_(config), pool_(config.net_budget_bytes) {
    deepest_ = deepest_layer(config_.loss);
  }

  void gram_sums(const TileGeometry& tile, const float* pixels, const std::vector<float*>& grams) override {
    check(tile, "gramSums");
    NetPool<TileNet, TileNetKey>::Entry& e = acquire(tile, 0);
    run_forward(*e.net->net, pixels);
    core_grams(*e.net->net, tile, grams);
  }

  void content_activations(const TileGeometry& tile, const float* pixels, const std::vector<float*>& out) override {
    check(tile, "contentActivations");
    NetPool<TileNet, TileNetKey>::Entry& e = acquire(tile, 0);
    run_forward(*e.net->net, pixels);
    for (size_t k = 0; k < config_.loss.content.size(); k++)
      copy_core(*e.net->net, tile, config_.loss.content[k].conv_index, out[k]);
  }

  double forward(const TileGeometry& tile, const float* pixels, const TileContent& content, uint64_t tag,
                 const std::vector<float*>& grams) override {
    check(tile, "forward");
    NetPool<TileNet, TileNetKey>::Entry& e = acquire(tile, tag);
    const std::vector<const float*> targets = prepare(e, tile, pixels, content);
    e.tag = tag;
    core_grams(*e.net->net, tile, grams);
    return content_loss(*e.net->net, tile, targets);
  }

  void backward(const TileGeometry& tile, const float* pixels, const TileContent& content, uint64_t tag,
                const std::vector<const float*>& style_coefficients, float* gradient_out) override {
    check(tile, "backward");
    bool hit = false;
    NetPool<TileNet, TileNetKey>::Entry& e = acquire(tile, tag, &hit);
    const std::vector<const float*> targets =
        hit ? cached_targets(e, tile, content) : prepare(e, tile, pixels, content);
    if (hit) stats_.forwards_reused++;
    e.tag = 0;  // consumed: the net may take another tile
    VggNet& net = *e.net->net;
    // float32 nets: the gradient goes back through the ReLU in place (no bf16 buffer).
    net.backward([&](int layer, float* grad, kernels::bf16_bits*) {
      layer_backward(net, tile, layer, grad, targets, style_coefficients);
    });
    std::memcpy(gradient_out, net.image_gradient(),
                size_t(tile.extended.height()) * tile.extended.width() * 3 * sizeof(float));
  }

  TileStats stats() const override { return pool_stats(stats_, pool_); }

 private:
  void check(const TileGeometry& tile, const char* op) const {
    const std::string problem = tile_geometry_problem(tile, deepest_, config_.max_tile_height, config_.max_tile_width);
    if (!problem.empty()) throw Error(std::string("cpu: tile ") + op + ": " + problem);
  }

  NetPool<TileNet, TileNetKey>::Entry& acquire(const TileGeometry& tile, uint64_t tag, bool* hit_out = nullptr) {
    const TileNetKey key{{tile.extended.height(), tile.extended.width()}, {tile.image_height, tile.image_width}};
    bool hit = false;
    auto make = [&] {
      release_freed_pages();  // of the nets the pool freed to make room (vgg_net.h)
      auto n = std::make_unique<TileNet>();
      n->net = std::make_unique<VggNet>(engine_, *weights_, tile_plan(engine_, config_, key.extended, key.image),
                                        &scratchpad_);
      return n;
    };
    NetPool<TileNet, TileNetKey>::Entry& e = pool_.acquire(key, tag, net_bytes(key), make, hit);
    if (hit_out) *hit_out = hit;
    return e;
  }

  size_t net_bytes(const TileNetKey& key) {
    for (const auto& [k, bytes] : net_bytes_)
      if (same_key(k, key)) return bytes;
    const size_t bytes = tile_plan(engine_, config_, key.extended, key.image).buffer_bytes(false) +
                         content_cache_floats(config_, key.extended) * sizeof(float);
    net_bytes_.emplace_back(key, bytes);
    return bytes;
  }

  void run_forward(VggNet& net, const float* pixels) {
    const ImageShape s = shape_of(net);
    std::memcpy(net.image(), pixels, size_t(s.height) * s.width * 3 * sizeof(float));
    net.forward();
    stats_.forwards++;
  }

  struct ImageShape {
    int height, width;
  };
  static ImageShape shape_of(const VggNet& net) { return {net.shape(0).height, net.shape(0).width}; }

  // Forwards the tile (after the content tile when the content comes as
  // pixels, whose core targets the net then keeps); the content targets to use.
  std::vector<const float*> prepare(NetPool<TileNet, TileNetKey>::Entry& e, const TileGeometry& tile,
                                    const float* pixels, const TileContent& content) {
    VggNet& net = *e.net->net;
    if (!config_.loss.content.empty() && content.targets.empty()) {
      if (!content.pixels) throw Error("cpu: tile: no content targets and no content pixels");
      run_forward(net, content.pixels);
      e.net->content_cache.resize(content_cache_floats(config_, {tile.extended.height(), tile.extended.width()}));
      float* out = e.net->content_cache.data();
      for (const auto& l : config_.loss.content) {
        copy_core(net, tile, l.conv_index, out);
        const PixelRect c = core_at_layer(tile, l.conv_index);
        out += size_t(c.height()) * c.width() * kVgg19[l.conv_index].out_channels;
      }
    }
    run_forward(net, pixels);
    return cached_targets(e, tile, content);
  }

  std::vector<const float*> cached_targets(NetPool<TileNet, TileNetKey>::Entry& e, const TileGeometry& tile,
                                           const TileContent& content) const {
    if (!content.targets.empty() || config_.loss.content.empty()) return content.targets;
    std::vector<const float*> targets;
    const float* at = e.net->content_cache.data();
    for (const auto& l : config_.loss.content) {
      targets.push_back(at);
      const PixelRect c = core_at_layer(tile, l.conv_index);
      at += size_t(c.height()) * c.width() * kVgg19[l.conv_index].out_channels;
    }
    return targets;
  }

  static kernels::CoreRect core_rect(const TileGeometry& tile, int layer) {
    const PixelRect c = core_at_layer(tile, layer);
    return {c.y0, c.y1, c.x0, c.x1};
  }

  // The core's positions of an NHWC loss layer, row by row, into `out`.
  static void copy_core(const VggNet& net, const TileGeometry& tile, int layer, float* out) {
    const LayerShape& s = net.shape(layer);
    kernels::gather_core_cpu(net.activation(layer), out, s.width, s.channels, core_rect(tile, layer));
  }

  // Rows of the core of an NHWC loss layer, a block at a time, gathered into
  // scratch_a_ (so that each product is one sgemm over many positions).
  template <class F>
  void for_core_blocks(const VggNet& net, const TileGeometry& tile, int layer, F&& f) {
    const LayerShape& s = net.shape(layer);
    const PixelRect c = core_at_layer(tile, layer);
    const size_t row = size_t(c.width()) * s.channels;
    const int rows = int(std::max<size_t>(1, kScratchFloats / row));
    for (int y = c.y0; y < c.y1; y += rows) {
      const int n = std::min(rows, c.y1 - y);
      kernels::gather_core_cpu(net.activation(layer), scratch_a_.data(), s.width, s.channels, {y, y + n, c.x0, c.x1});
      f(y, n, c, row);
    }
  }

  void core_grams(const VggNet& net, const TileGeometry& tile, const std::vector<float*>& grams) {
    for (size_t l = 0; l < config_.loss.style.size(); l++) {
      const int layer = config_.loss.style[l].conv_index;
      const int channels = net.shape(layer).channels;
      bool first = true;
      ensure_scratch(net, layer, tile);
      for_core_blocks(net, tile, layer, [&](int, int n, const PixelRect& c, size_t) {
        gram(scratch_a_.data(), n * c.width(), channels, 1.f, first ? 0.f : 1.f, grams[l]);
        first = false;
      });
    }
  }

  // The scratch a block of at least one core row needs.
  void ensure_scratch(const VggNet& net, int layer, const TileGeometry& tile) {
    const size_t row = size_t(core_at_layer(tile, layer).width()) * net.shape(layer).channels;
    const size_t floats = std::max(kScratchFloats, row);
    if (scratch_a_.size() < floats) scratch_a_.resize(floats);
    if (scratch_b_.size() < floats) scratch_b_.resize(floats);
  }

  // The whole image's positions at a layer (the N of its normalisation).
  static double image_positions(const TileGeometry& tile, int layer) {
    return double(layer_extent(tile.image_height, layer)) * layer_extent(tile.image_width, layer);
  }

  double content_loss(const VggNet& net, const TileGeometry& tile, const std::vector<const float*>& targets) const {
    double loss = 0;
    for (size_t k = 0; k < config_.loss.content.size(); k++) {
      const int layer = config_.loss.content[k].conv_index;
      const LayerShape& s = net.shape(layer);
      const double coef = config_.loss.content[k].weight / (4.0 * image_positions(tile, layer) * s.channels);
      kernels::core_content_loss_cpu(net.activation(layer), targets[k], s.width, s.channels, core_rect(tile, layer),
                                     float(coef), &loss);
    }
    return loss;
  }

  // One layer of pass 2: the style term A coef on the core's rows, then back
  // through the ReLU with the content term on the core's positions.
  void layer_backward(const VggNet& net, const TileGeometry& tile, int layer, float* grad,
                      const std::vector<const float*>& targets, const std::vector<const float*>& coefficients) {
    const LayerShape& s = net.shape(layer);
    const float* a = net.activation(layer);
    const LossSpec& spec = config_.loss;
    if (entry_at_layer(spec.style, layer) >= 0) ensure_scratch(net, layer, tile);
    if (const int i = entry_at_layer(spec.style, layer); i >= 0)
      for_core_blocks(net, tile, layer, [&](int y0, int n, const PixelRect& core, size_t row) {
        // scratch_b_ = A_block coef, then added into the gradient's core rows.
        std::fill(scratch_b_.begin(), scratch_b_.begin() + long(n * row), 0.f);
        add_gram_gradient(scratch_a_.data(), n * core.width(), s.channels, coefficients[i], scratch_b_.data());
#pragma omp parallel for schedule(static)
        for (int y = 0; y < n; y++) {
          float* g = grad + (size_t(y0 + y) * s.width + core.x0) * s.channels;
          const float* d = scratch_b_.data() + size_t(y) * row;
          for (size_t k = 0; k < row; k++) g[k] += d[k];
        }
      });
    const int k = entry_at_layer(spec.content, layer);
    if (k < 0) {
      kernels::relu_backward_cpu(grad, a, nullptr, 0.f, 0.f, nullptr, s.pixels() * s.channels, 1);
      return;
    }
    const double coef = spec.alpha * spec.content[k].weight / (2.0 * image_positions(tile, layer) * s.channels);
    kernels::core_relu_backward_cpu(grad, a, targets[k], s.height, s.width, s.channels, core_rect(tile, layer),
                                    float(coef), 0.f, nullptr);
  }

  dnnl::engine engine_;
  std::shared_ptr<CpuWeights> weights_;
  TileSessionConfig config_;
  int deepest_ = 0;
  NetPool<TileNet, TileNetKey> pool_;
  std::vector<std::pair<TileNetKey, size_t>> net_bytes_;
  std::vector<float> scratch_a_, scratch_b_;  // a block of core rows, and its product with a style coefficient
  SharedScratchpad scratchpad_;               // the nets': they run one at a time
  TileStats stats_;
};

}  // namespace

std::unique_ptr<TileSession> make_tile_session(const dnnl::engine& engine, std::shared_ptr<CpuWeights> weights,
                                               const TileSessionConfig& config) {
  return std::make_unique<CpuTileSession>(engine, std::move(weights), config);
}

// The weights as given and the reordered copies the nets of every shape ask
// for, each net's generated code, the scratchpad the nets share, and per
// shape its buffers (less the scratchpad) with the content targets it may keep.
TileMemory tile_memory(const dnnl::engine& engine, const TileSessionConfig& config,
                       const std::vector<ImageSize>& tile_shapes) {
  std::vector<VggNetPlan> plans;
  plans.reserve(tile_shapes.size());
  TileMemory m;
  for (const ImageSize& s : tile_shapes) {
    plans.push_back(tile_plan(engine, config, s, s));
    m.net_per_shape.push_back(
        double(plans.back().buffer_bytes(false) + content_cache_floats(config, s) * sizeof(float)));
  }
  std::vector<const VggNetPlan*> pointers;
  int primitives = 0;
  size_t scratchpad = 0;  // one for every net (SharedScratchpad)
  for (const VggNetPlan& p : plans) {
    pointers.push_back(&p);
    primitives += p.primitive_count();
    scratchpad = std::max(scratchpad, p.scratchpad_bytes());
  }
  const ReorderedWeights reordered = reordered_weights(pointers);
  size_t widest_row = 0;  // the scratch holds at least one core row of a style layer
  for (const auto& l : config.loss.style)
    widest_row = std::max(
        widest_row, size_t(layer_extent(config.max_tile_width, l.conv_index)) * kVgg19[l.conv_index].out_channels);
  m.fixed = double(sizeof(float) * vgg_weight_floats(deepest_layer(config.loss) + 1) + reordered.bytes +
                   kGeneratedCodeBytes * size_t(primitives + reordered.copies) +
                   2 * sizeof(float) * std::max(kScratchFloats, widest_row) + scratchpad);
  return m;
}

}  // namespace nst::cpu
