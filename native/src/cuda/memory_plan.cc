#include "cuda/memory_plan.h"

#include <algorithm>

#include "cuda/format_bytes.h"
#include "cuda/geometry.h"
#include "kernels/pool_math.h"

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
    for (int c : s.content_layers) {
      m.content_targets += b * size_t(layers[c].height) * layers[c].width * layers[c].out_channels * f;
    }
    for (int l : s.style_layers) {
      size_t gram = size_t(layers[l].out_channels) * layers[l].out_channels * f;
      m.style_buffers += 2 * b * gram;
    }
  } else {
    m.image_state = image;
    // A reserve of one Gram at a time (the accumulated targets are the session's).
    for (int l : s.style_layers) {
      m.style_buffers = std::max(m.style_buffers, size_t(layers[l].out_channels) * layers[l].out_channels * f);
    }
  }
  return m;
}

size_t required_bytes(const SessionShape& shape) {
  return estimate_memory(shape).total() + kWorkspaceCap + kCublasWorkspace;
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

namespace {

// Memory grows monotonically with the scale, and so does every tensor:
// bisect on the scale for the largest size that `fits`.
template <typename Fits>
std::pair<int, int> largest_scaled_size(const SessionShape& shape, Fits fits) {
  auto scaled = [&](double scale) {
    SessionShape s = shape;
    s.height = std::max(1, int(shape.height * scale));
    s.width = std::max(1, int(shape.width * scale));
    return s;
  };
  if (!fits(scaled(1e-6))) return {0, 0};
  double lo = 0, hi = 1;
  for (int it = 0; it < 60; it++) {
    double mid = 0.5 * (lo + hi);
    if (fits(scaled(mid))) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  SessionShape s = scaled(lo);
  return {s.height, s.width};
}

bool within_tensor_limit(const SessionShape& shape) { return largest_tensor_elements(shape) <= kMaxTensorElements; }

}  // namespace

std::string tensor_limit_violation(const SessionShape& shape) {
  const size_t elements = largest_tensor_elements(shape);
  if (elements <= kMaxTensorElements) return "";
  const size_t per_image = elements / size_t(shape.batch);
  const size_t max_batch = kMaxTensorElements / per_image;
  std::string text = "cuda: a " + std::to_string(shape.width) + "x" + std::to_string(shape.height) + " batch " +
                     std::to_string(shape.batch) + " session has a tensor of " + std::to_string(elements) +
                     " elements, beyond the 2^31 - 1 that cuDNN's tensor descriptors can hold";
  if (max_batch > 0) text += "; at this size use batch " + std::to_string(max_batch) + " or less";
  auto [h, w] = largest_scaled_size(shape, within_tensor_limit);
  if (h > 0) {
    text += (max_batch > 0 ? ", or " : "; ") + std::string("at batch ") + std::to_string(shape.batch) +
            " at most about " + std::to_string(w) + "x" + std::to_string(h);
  }
  return text;
}

std::pair<int, int> largest_fitting_size(const SessionShape& shape, size_t available) {
  return largest_scaled_size(
      shape, [&](const SessionShape& s) { return within_tensor_limit(s) && required_bytes(s) <= available; });
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
