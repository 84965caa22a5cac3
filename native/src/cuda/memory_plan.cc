#include "cuda/memory_plan.h"

#include <algorithm>
#include <limits>

#include "cuda/geometry.h"
#include "kernels/common.h"
#include "kernels/pool_math.h"
#include "session_config.h"
#include "tile_geometry.h"

namespace nst::cuda {

MemoryPlan estimate_memory(const SessionShape& s) {
  const size_t f = sizeof(float), b = size_t(s.batch);
  std::vector<LayerGeometry> layers = network_geometry(s.height, s.width, s.num_layers);
  MemoryPlan m;
  size_t largest_map = 0, largest_output = 0;
  for (int i = 0; i < s.num_layers; i++) {
    const LayerGeometry& g = layers[i];
    size_t pixels = size_t(g.height) * g.width;
    m.activations += b * pixels * g.out_channels * f;
    // The last layer's pooled map is never used.
    if (g.pool_after && i + 1 < s.num_layers) {
      m.activations += b * size_t(kernels::pooled_size(g.height)) * kernels::pooled_size(g.width) * g.out_channels * f;
    }
    largest_map = std::max(largest_map, b * pixels * std::max(g.in_channels, g.out_channels) * f);
    largest_output = std::max(largest_output, b * pixels * g.out_channels * f);
  }
  if (s.fused_conv) m.fused_zeros = largest_output;
  size_t image = b * size_t(s.height) * s.width * 3 * f;
  if (s.backward) {
    m.gradients = 2 * largest_map;
    m.image_state = 5 * image;  // x, m, v, dx, staging of uploads
    if (s.temporal) m.temporal_targets = image + image / 3;
    for (int c : s.content_layers) {
      m.content_targets += b * size_t(layers[c].height) * layers[c].width * layers[c].out_channels * f;
    }
    // With masks a target and a difference Gram per region, each region's
    // mask at each style layer and one item's A o m; a content mask per content layer.
    const size_t regions = size_t(std::max(s.masks.regions, 1));
    size_t scratch = 0;
    for (int l : s.style_layers) {
      size_t gram = size_t(layers[l].out_channels) * layers[l].out_channels * f;
      m.style_buffers += 2 * b * regions * gram;
      const size_t positions = size_t(layers[l].height) * layers[l].width;
      if (s.masks.regions > 0) m.masks += b * regions * positions * f;
      scratch = std::max(scratch, positions * layers[l].out_channels * f);
    }
    if (s.masks.regions > 0) m.masks += scratch;
    if (s.masks.content_mask)
      for (int c : s.content_layers) m.masks += b * size_t(layers[c].height) * layers[c].width * f;
  } else {
    m.image_state = image;
    // A reserve of one Gram at a time (the accumulated targets are the
    // session's); with masks the style's region at each layer and A o m.
    size_t scratch = 0;
    for (int l : s.style_layers) {
      m.style_buffers = std::max(m.style_buffers, size_t(layers[l].out_channels) * layers[l].out_channels * f);
      const size_t positions = size_t(layers[l].height) * layers[l].width;
      if (s.masks.regions > 0) m.masks += positions * f;
      scratch = std::max(scratch, positions * layers[l].out_channels * f);
    }
    if (s.masks.regions > 0) m.masks += scratch;
  }
  return m;
}

size_t required_bytes(const SessionShape& shape) {
  const size_t bookkeeping =
      sizeof(double) * shape.batch * kernels::kLossSlots + sizeof(float) * kStepChunk + sizeof(int);
  return estimate_memory(shape).total() + kWorkspaceCap + kCublasWorkspace + bookkeeping;
}

size_t style_pass_bytes(const SessionShape& style_pass, size_t session_workspace) {
  const size_t growth = kWorkspaceCap > session_workspace ? kWorkspaceCap - session_workspace : 0;
  return estimate_memory(style_pass).total() + growth;
}

size_t largest_tensor_elements(const SessionShape& shape) {
  size_t largest = 0;
  for (const LayerGeometry& g : network_geometry(shape.height, shape.width, shape.num_layers)) {
    largest = std::max(largest, size_t(shape.batch) * g.height * g.width * std::max(g.in_channels, g.out_channels));
  }
  return largest;
}

bool within_tensor_limit(const SessionShape& shape) { return largest_tensor_elements(shape) <= kMaxTensorElements; }

SessionShape session_shape(const SessionConfig& config, bool fused_conv, const MaskShape& masks) {
  SessionShape s;
  s.masks = masks;
  s.height = config.height;
  s.width = config.width;
  s.batch = config.batch;
  s.num_layers = deepest_layer(config.loss) + 1;
  s.fused_conv = fused_conv;
  s.temporal = config.loss.temporal_weight != 0.f;
  for (const auto& c : config.loss.content) s.content_layers.push_back(c.conv_index);
  for (const auto& l : config.loss.style) s.style_layers.push_back(l.conv_index);
  return s;
}

SessionShape style_pass_shape(const SessionConfig& config, ImageSize size, bool fused_conv, const MaskShape& masks) {
  SessionShape s;
  s.masks = masks;
  s.height = size.height;
  s.width = size.width;
  s.num_layers = deepest_layer(config.loss.style) + 1;
  s.backward = false;
  s.fused_conv = fused_conv;
  for (const auto& l : config.loss.style) s.style_layers.push_back(l.conv_index);
  return s;
}

double job_bytes(const SessionConfig& config, const std::vector<ImageSize>& style_sizes, bool fused_conv,
                 const MaskShape& masks) {
  const SessionShape session = session_shape(config, fused_conv, masks);
  if (!within_tensor_limit(session)) return std::numeric_limits<double>::infinity();
  size_t style_pass = 0;
  if (!config.loss.style.empty()) {
    for (const ImageSize& size : style_sizes) {
      const SessionShape pass = style_pass_shape(config, size, fused_conv, masks);
      if (!within_tensor_limit(pass)) return std::numeric_limits<double>::infinity();
      style_pass = std::max(style_pass, estimate_memory(pass).total());
    }
  }
  return double(sizeof(float) * vgg_weight_floats(session.num_layers) + required_bytes(session) + style_pass);
}

namespace {

SessionShape tile_shape(const TileSessionConfig& config, ImageSize size, bool fused_conv) {
  SessionShape s;
  s.height = size.height;
  s.width = size.width;
  s.num_layers = deepest_layer(config.loss) + 1;
  s.fused_conv = fused_conv;
  return s;
}

size_t content_maps_floats(const TileSessionConfig& config, ImageSize size) {
  size_t floats = 0;
  for (const auto& c : config.loss.content)
    floats += size_t(layer_extent(size.height, c.conv_index)) * layer_extent(size.width, c.conv_index) *
              kVgg19[c.conv_index].out_channels;
  return floats;
}

}  // namespace

size_t tile_net_bytes(const TileSessionConfig& config, ImageSize shape, bool fused_conv) {
  const MemoryPlan m = estimate_memory(tile_shape(config, shape, fused_conv));
  const size_t image = size_t(shape.height) * shape.width * 3 * sizeof(float);
  return m.activations + m.gradients + m.fused_zeros + 2 * image + content_maps_floats(config, shape) * sizeof(float);
}

size_t tile_fixed_bytes(const TileSessionConfig& config) {
  size_t grams = 0;
  for (const auto& s : config.loss.style)
    grams += size_t(kVgg19[s.conv_index].out_channels) * kVgg19[s.conv_index].out_channels;
  const size_t targets = content_maps_floats(config, {config.max_tile_height, config.max_tile_width});
  return sizeof(float) * (vgg_weight_floats(deepest_layer(config.loss) + 1) + 2 * grams + targets) + kWorkspaceCap +
         kCublasWorkspace + sizeof(double) * kernels::kLossSlots;
}

TileMemory tile_memory(const TileSessionConfig& config, const std::vector<ImageSize>& shapes, bool fused_conv) {
  TileMemory m;
  m.fixed = double(tile_fixed_bytes(config));
  for (const ImageSize& s : shapes) {
    if (!within_tensor_limit(tile_shape(config, s, fused_conv))) m.fixed = std::numeric_limits<double>::infinity();
    m.net_per_shape.push_back(double(tile_net_bytes(config, s, fused_conv)));
  }
  return m;
}

double tile_session_bytes(const TileSessionConfig& config, const std::vector<ImageSize>& shapes, bool fused_conv) {
  const TileMemory m = tile_memory(config, shapes, fused_conv);
  double largest = 0;
  for (double n : m.net_per_shape) largest = std::max(largest, n);
  return m.fixed + largest;
}

}  // namespace nst::cuda
