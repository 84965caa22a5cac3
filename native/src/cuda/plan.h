// Shapes and memory of a CUDA session, decided on the host before anything is
// allocated (pure host code: tested by host_test.cc without a GPU).
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <vector>

namespace nst::cuda {

// Conv layer i of VGG-19 at one image size: input/output spatial size is
// height x width (3x3 SAME convs keep it), then an optional 2x2 SAME pool.
struct LayerGeometry {
  int height;
  int width;
  int in_channels;
  int out_channels;
  bool pool_after;
};

std::vector<LayerGeometry> network_geometry(int height, int width, int num_layers);

struct SessionShape {
  int height = 0;
  int width = 0;
  int batch = 1;
  int num_layers = 0;               // conv layers run: deepest loss layer + 1
  std::vector<int> content_layers;  // conv indices
  std::vector<int> style_layers;
  bool backward = true;             // false: forward only (style targets)
};

// Device bytes per buffer family (workspace excluded: decided by cuDNN find).
struct MemoryPlan {
  size_t activations = 0;      // post-ReLU outputs of every layer + pooled maps
  size_t gradients = 0;        // two ping-pong buffers of the largest map
  size_t image_state = 0;      // image, Adam m and v, image gradient, input staging
  size_t content_targets = 0;  // target activations of the content layers
  size_t style_buffers = 0;    // target Gram + gradient Gram per style layer
  size_t total() const { return activations + gradients + image_state + content_targets + style_buffers; }
};

MemoryPlan estimate_memory(const SessionShape& shape);

// Upper bound on the cuDNN workspace we accept when choosing algorithms; the
// estimate reserves it so that the check before allocating is conservative.
inline constexpr size_t kWorkspaceCap = size_t(256) << 20;
// cuBLAS workspace (recommended size for Hopper; needed for graph capture).
inline constexpr size_t kCublasWorkspace = size_t(32) << 20;

size_t required_bytes(const SessionShape& shape);

// The largest height x width with the same aspect ratio (and the same batch
// and loss) whose required_bytes fit `available`; {0, 0} when none does.
std::pair<int, int> largest_fitting_size(const SessionShape& shape, size_t available);

std::string format_bytes(size_t bytes);

// One-line "out of memory" message for a session that does not fit.
std::string out_of_memory_message(const SessionShape& shape, size_t available, const std::string& device);

// Key of the per-shape cuDNN algorithm cache.
// FusedForward: forward restricted to IMPLICIT_PRECOMP_GEMM (see ConvPlan in conv.h).
enum class ConvDirection { Forward, BackwardData, FusedForward };
struct ConvKey {
  int batch, height, width, in_channels, out_channels, math;
  ConvDirection direction;
  bool operator<(const ConvKey& o) const {
    return std::tie(batch, height, width, in_channels, out_channels, math, direction) <
           std::tie(o.batch, o.height, o.width, o.in_channels, o.out_channels, o.math, o.direction);
  }
};

}  // namespace nst::cuda
