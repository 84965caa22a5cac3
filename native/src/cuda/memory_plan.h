// What a CUDA session needs from the device, decided on the host before
// anything is allocated: the bytes per buffer family, and whether every
// tensor stays within what cuDNN's API can describe (pure host code: tested by
// host_test.cc without a GPU, and against what the engine really allocates on
// the CPU stand-in by native/emulation/test/memory_plan_test.cc).
#pragma once

#include <cstddef>
#include <vector>

#include "engine.h"

namespace nst::cuda {

struct SessionShape {
  int height = 0;
  int width = 0;
  int batch = 1;
  int num_layers = 0;               // conv layers run: deepest loss layer + 1
  std::vector<int> content_layers;  // conv indices
  std::vector<int> style_layers;
  bool backward = true;     // false: forward only (style targets)
  bool fused_conv = false;  // the fused conv+bias+ReLU forward (needs a zero map)
  bool temporal = false;    // video: a temporal term (its targets: an image and a weight per pixel)
  MaskShape masks;          // spatial control: style regions per item (0: no masks), a content mask
};

// Device bytes per buffer family (workspace excluded: decided by cuDNN find).
struct MemoryPlan {
  size_t activations = 0;       // post-ReLU outputs of every layer + pooled maps
  size_t gradients = 0;         // two ping-pong buffers of the largest map
  size_t image_state = 0;       // image, Adam m and v, image gradient, input staging
  size_t content_targets = 0;   // target activations of the content layers
  size_t style_buffers = 0;     // target Gram + gradient Gram per style layer
  size_t fused_zeros = 0;       // the fused conv's z input: zeros as large as the largest output map
  size_t temporal_targets = 0;  // video: the warped previous frame and its pixel weights
  size_t masks = 0;             // spatial control: region masks per style layer, the A o m scratch, content masks
  size_t total() const {
    return activations + gradients + image_state + content_targets + style_buffers + fused_zeros + temporal_targets +
           masks;
  }
};

MemoryPlan estimate_memory(const SessionShape& shape);

// Upper bound on the cuDNN workspace we accept when choosing algorithms; the
// estimate reserves it so that the check before allocating is conservative.
inline constexpr size_t kWorkspaceCap = size_t(256) << 20;
// cuBLAS workspace (recommended size for Hopper; needed for graph capture).
inline constexpr size_t kCublasWorkspace = size_t(32) << 20;

// Adam's step sizes are uploaded in chunks of this many updates (session.cc).
inline constexpr int kStepChunk = 1024;

// What a session allocates besides its MemoryPlan: the workspace reserves
// above, the loss accumulators, the step sizes and the step index.
size_t required_bytes(const SessionShape& shape);

// What a forward-only style pass (shape.backward = false, batch 1, the style
// layers listed) adds on top of a session that already holds
// `session_workspace` bytes of cuDNN workspace: its maps, the style image,
// one Gram, and the growth of that workspace up to kWorkspaceCap (the pass
// may need a larger one; the old one is freed before the new is allocated).
size_t style_pass_bytes(const SessionShape& style_pass, size_t session_workspace);

// cuDNN's legacy tensor descriptors (cudnnSetTensor4dDescriptor) count
// elements in 32 bits: a tensor of 2^31 elements or more fails inside cuDNN
// with CUDNN_STATUS_NOT_SUPPORTED, whatever memory is free.
inline constexpr size_t kMaxTensorElements = (size_t(1) << 31) - 1;

// Elements of the largest tensor the shape hands cuDNN: the widest conv
// input or output over the whole batch.
size_t largest_tensor_elements(const SessionShape& shape);
bool within_tensor_limit(const SessionShape& shape);

// The shapes the engine plans: a session of `config`, and the forward-only
// pass that computes the style targets of one style image of `size`.
SessionShape session_shape(const SessionConfig& config, bool fused_conv, const MaskShape& masks = {});
SessionShape style_pass_shape(const SessionConfig& config, ImageSize size, bool fused_conv,
                              const MaskShape& masks = {});

// The peak device bytes of a whole job, as Engine::estimate_memory answers:
// the weights, the session, and the largest of its style passes on top (the
// session's workspace reserve covers theirs); infinity when a tensor of the
// session or of a style pass is beyond cuDNN's limit.
double job_bytes(const SessionConfig& config, const std::vector<ImageSize>& style_sizes, bool fused_conv,
                 const MaskShape& masks = {});

// Exact tiling (engine.h's TileSession, tile_session.cc). One net of a tile
// of `shape`: its Pass's maps (and the fused conv's zeros), two gradient
// buffers, the tile's pixels and their gradient, and the content targets of
// its core it may keep.
size_t tile_net_bytes(const TileSessionConfig& config, ImageSize shape, bool fused_conv);
// What a tile session holds whatever its tiles: the weights, the workspace
// and cuBLAS reserves, the Gram sums and style coefficients, the content
// targets' upload buffers (for the largest tile), the loss accumulators.
size_t tile_fixed_bytes(const TileSessionConfig& config);
// The fixed bytes, and one net per shape; infinity (in the fixed bytes) when a
// tile's tensor is beyond cuDNN's limit.
TileMemory tile_memory(const TileSessionConfig& config, const std::vector<ImageSize>& shapes, bool fused_conv);
// The fixed bytes and the largest net of `shapes`: what a tile session needs at least.
double tile_session_bytes(const TileSessionConfig& config, const std::vector<ImageSize>& shapes, bool fused_conv);

}  // namespace nst::cuda
