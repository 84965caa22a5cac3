#include "cuda/plan.h"

#include <algorithm>
#include <cstdio>

#include "cuda/pool_math.h"
#include "engine.h"

namespace nst::cuda {

std::vector<LayerGeometry> network_geometry(int height, int width, int num_layers) {
  std::vector<LayerGeometry> layers;
  int h = height, w = width;
  for (int i = 0; i < num_layers; i++) {
    const VggLayerShape& v = kVgg19[i];
    layers.push_back({h, w, v.in_channels, v.out_channels, v.pool_after});
    if (v.pool_after) {
      h = pooled_size(h);
      w = pooled_size(w);
    }
  }
  return layers;
}

MemoryPlan estimate_memory(const SessionShape& s) {
  const size_t f = sizeof(float), b = size_t(s.batch);
  std::vector<LayerGeometry> layers = network_geometry(s.height, s.width, s.num_layers);
  MemoryPlan m;
  size_t largest_map = 0;
  for (int i = 0; i < s.num_layers; i++) {
    const LayerGeometry& g = layers[i];
    size_t pixels = size_t(g.height) * g.width;
    m.activations += b * pixels * g.out_channels * f;
    // The last layer's pooled map is never used.
    if (g.pool_after && i + 1 < s.num_layers) {
      m.activations += b * size_t(pooled_size(g.height)) * pooled_size(g.width) * g.out_channels * f;
    }
    largest_map = std::max(largest_map, b * pixels * std::max(g.in_channels, g.out_channels) * f);
  }
  size_t image = b * size_t(s.height) * s.width * 3 * f;
  if (s.backward) {
    m.gradients = 2 * largest_map;
    m.image_state = 5 * image;  // x, m, v, dx, staging of uploads
    for (int c : s.content_layers) {
      m.content_targets += b * size_t(layers[c].height) * layers[c].width * layers[c].out_channels * f;
    }
    for (int l : s.style_layers) {
      size_t gram = size_t(layers[l].out_channels) * layers[l].out_channels * f;
      m.style_buffers += 2 * b * gram;
    }
  } else {
    m.image_state = image;
    // One Gram at a time, plus the accumulated targets (counted by the session).
    for (int l : s.style_layers) {
      m.style_buffers = std::max(m.style_buffers, size_t(layers[l].out_channels) * layers[l].out_channels * f);
    }
  }
  return m;
}

size_t required_bytes(const SessionShape& shape) {
  return estimate_memory(shape).total() + kWorkspaceCap + kCublasWorkspace;
}

std::pair<int, int> largest_fitting_size(const SessionShape& shape, size_t available) {
  // Memory grows monotonically with the scale: bisect on it.
  auto fits = [&](double scale, int* h, int* w) {
    SessionShape s = shape;
    s.height = std::max(1, int(shape.height * scale));
    s.width = std::max(1, int(shape.width * scale));
    *h = s.height;
    *w = s.width;
    return required_bytes(s) <= available;
  };
  int h = 0, w = 0;
  double lo = 0, hi = 1;
  if (!fits(1e-6, &h, &w)) return {0, 0};
  for (int it = 0; it < 60; it++) {
    double mid = 0.5 * (lo + hi);
    if (fits(mid, &h, &w)) lo = mid; else hi = mid;
  }
  fits(lo, &h, &w);
  return {h, w};
}

std::string format_bytes(size_t bytes) {
  char buf[32];
  double mib = double(bytes) / (1 << 20);
  if (mib >= 1024) std::snprintf(buf, sizeof buf, "%.1f GiB", mib / 1024);
  else std::snprintf(buf, sizeof buf, "%.0f MiB", mib);
  return buf;
}

std::string out_of_memory_message(const SessionShape& shape, size_t available, const std::string& device) {
  auto [h, w] = largest_fitting_size(shape, available);
  std::string text = "cuda: a " + std::to_string(shape.width) + "x" + std::to_string(shape.height) + " batch " +
                     std::to_string(shape.batch) + " session needs about " + format_bytes(required_bytes(shape)) +
                     " but " + format_bytes(available) + " is free on " + device;
  if (h > 0) {
    text += "; the largest that fits is about " + std::to_string(w) + "x" + std::to_string(h) + " at batch " +
            std::to_string(shape.batch);
  } else {
    text += "; even the smallest size does not fit at batch " + std::to_string(shape.batch);
  }
  return text;
}

}  // namespace nst::cuda
