// The contract between the N-API glue (addon.cc) and the compute engines
// (cpu/ on oneDNN, cuda/ on cuDNN). It mirrors the TypeScript seam in
// packages/core/src/backend.ts: read that first; the semantics are the same.
//
// Layouts: images and activations are float32 NHWC; kernels are HWIO
// (3 x 3 x in x out, Keras order) as they arrive from JavaScript. An engine
// may re-layout internally (once, at setWeights).
//
// Threading: the glue calls an engine from one thread at a time (the JS
// thread or one AsyncWorker), never concurrently; only estimate_memory and
// device_memory_available, which read nothing an engine changes after its
// creation, may run while another call is in progress.
//
// Errors: engines throw nst::Error (a std::runtime_error) with a message
// naming the operation, and as data: what kind of failure it is and the job
// field at fault, which the glue hands to JavaScript as the error's
// properties (nothing reads the message to decide).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nst {

// The kinds of failure, named as packages/core/src/errors.ts's UserErrorCode
// names them, and Internal: a bug, or a failure of the platform (a CUDA call).
enum class ErrorCode { NotFound, Unsupported, TooLarge, Internal };

inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::NotFound:
      return "not-found";
    case ErrorCode::Unsupported:
      return "unsupported";
    case ErrorCode::TooLarge:
      return "too-large";
    case ErrorCode::Internal:
      break;
  }
  return "internal";
}

struct Error : std::runtime_error {
  // An internal error.
  explicit Error(const std::string& message) : std::runtime_error(message) {}
  // `field`: the job field at fault, in camelCase as the job model names it
  // ("size", "styleScale", "precision", "gpu", "backend"), or empty.
  Error(ErrorCode code, std::string field, const std::string& message)
      : std::runtime_error(message), code(code), field(std::move(field)) {}

  // A job that needs more memory than is available where the engine computes:
  // `needed` bytes (infinity: beyond what the engine can describe at any
  // memory) against `available`.
  static Error too_large(std::string field, double needed, double available, const std::string& message) {
    Error e(ErrorCode::TooLarge, std::move(field), message);
    e.needed = needed;
    e.available = available;
    return e;
  }

  ErrorCode code = ErrorCode::Internal;
  std::string field;
  double needed = 0;     // too-large only
  double available = 0;  // too-large only
};

// 2x2 stride-2 pooling with TensorFlow's SAME padding, as the notebook: an odd
// size n gives ceil(n/2); the last window of an odd axis covers one row
// (column), padding sits at the bottom/right, and avg averages the valid
// elements only (the divisor is 1 or 2 per axis), max takes their maximum.
enum class Pooling { Avg, Max };

// One convolution's parameters (borrowed: valid only during setWeights).
struct ConvWeightsView {
  int in_channels;
  int out_channels;
  const float* kernel;  // 3*3*in*out, HWIO
  const float* bias;    // out
};

// A loss term at the ReLU output of conv layer `conv_index` (0 = conv1_1).
struct WeightedLayer {
  int conv_index;
  float weight;
};

struct LossSpec {
  std::vector<WeightedLayer> content;
  std::vector<WeightedLayer> style;
  float alpha = 10.f;
  float beta = 40.f;
  float tv_weight = 0.f;
  // Video: the weight of the temporal term (kernels/temporal_loss.cuh) against
  // each item's TargetsView::temporal; 0 (the default) leaves it out, and the
  // engines then hold no buffer for it.
  float temporal_weight = 0.f;
};

struct SessionConfig {
  int height = 0;
  int width = 0;
  int batch = 1;
  Pooling pooling = Pooling::Avg;
  LossSpec loss;
};

// Per batch item. content/style before alpha/beta; total after (see loss.ts).
struct LossValues {
  double content = 0, style = 0, tv = 0, temporal = 0, total = 0;
};

struct ImageView {
  int height;
  int width;
  const float* data;  // H*W*3, HWC
};

// Spatial control (packages/core/src/masks.ts): a mask at a layer is a weight
// in [0, 1] per position of that layer (the image's mask average-pooled at
// each pooling before it, as core's maskAtLayers computes it), row-major; one
// pointer per entry of a loss list (LossSpec::style or ::content, in order).
// Empty: no mask (white), which takes exactly the unmasked path.
using LayerMasks = std::vector<const float*>;

struct StyleImageView {
  ImageView image;
  float weight;  // within its region: a region's weights sum to 1
  // The region (index into TargetsView::style_masks) this style belongs to.
  int mask_index = 0;
  // The part of the painting to use, at the style image's layer sizes; empty: all of it.
  LayerMasks region = {};
};

// Video: the temporal term's target of one item, at the session's size: the
// previous stylised frame warped by the optical flow (H*W*3, HWC) and each
// pixel's weight in [0, 1] (H*W; 0 at occlusions and motion boundaries).
struct TemporalTargetView {
  const float* image;
  const float* weights;
};

struct TargetsView {
  ImageView content;                   // session size
  std::vector<StyleImageView> styles;  // any sizes, weights sum to 1
  // Read only when the loss has a temporal weight; absent: the item has no
  // temporal term (a video's first frame).
  std::optional<TemporalTargetView> temporal = std::nullopt;
  // Spatial control: the style regions' masks at the session's layer sizes,
  // one entry per region (empty LayerMasks: an unmasked region); empty: one
  // unmasked region of all the styles. A region's target is the blend of its
  // styles' guided Grams; its loss uses the output's Gram guided by its mask.
  std::vector<LayerMasks> style_masks = {};
  // The content loss's weight per position at each content layer; empty: 1.
  LayerMasks content_mask = {};
};

// What masks add to a session's buffers, for estimate_memory: the most style
// regions of a batch item when style masks are used (0: none), and whether
// any item has a content mask.
struct MaskShape {
  int regions = 0;
  bool content_mask = false;
};

struct AdamParams {
  // double: 1 - float(0.999) is off by 5e-5 relative, enough to move the loss
  // by 1e-4 over 20 updates; engines form 1 - beta in double.
  double beta1, beta2, eps;
  std::vector<float> step_sizes;  // lr_t per update; size = number of updates
};

// A session: one image size, one batch, one loss, buffers allocated once.
class Session {
 public:
  virtual ~Session() = default;
  virtual void set_targets(const std::vector<TargetsView>& targets) = 0;
  // batch*H*W*3; zeroes the Adam moments.
  virtual void set_images(const float* images) = 0;
  // Loss of the images as they are, then step_sizes.size() Adam updates.
  // `progress(done)` may be called from the calling thread at any time.
  virtual std::vector<LossValues> iterate(const AdamParams& adam, const std::function<void(int)>& progress) = 0;
  // Loss and d J / d image (batch*H*W*3) of the current images.
  virtual std::vector<LossValues> loss_and_gradient(float* gradient_out) = 0;
  virtual void read_images(float* out) const = 0;
  virtual void read_optimizer_state(float* m_out, float* v_out) const = 0;
  virtual void write_optimizer_state(const float* m, const float* v) = 0;
  virtual const SessionConfig& config() const = 0;
};

struct ImageSize {
  int height;
  int width;
};

// ---- Exact tiling (packages/core/src/tiling.ts has the mathematics) --------
//
// The loss is a sum over the positions of each loss layer (content) or a
// function of Gram matrices that are sums over positions (style), so a tile
// session computes it tile by tile and the caller adds the tiles up: pass 1
// forwards a tile (its core plus a halo) and returns its core's Gram sums and
// share of the content loss; pass 2 takes the whole image's style
// coefficients, puts the loss gradient on the core's positions only and
// backpropagates it to the tile's pixels. The caller holds the whole image,
// its gradient and the optimiser state (packages/job/src/tiled-session.ts).

// Rows y0..y1-1, columns x0..x1-1 (of an image, or of a layer's positions).
struct PixelRect {
  int y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  int height() const { return y1 - y0; }
  int width() const { return x1 - x0; }
};

// A tile of an image of image_height x image_width: the core it accounts for
// and the extended region rendered for it (the core and its halo, clipped at
// the image), in that image's pixels. Sessions check it (tile_geometry.h):
// origins on the deepest loss layer's stride, a halo at least that layer's
// receptive margin, ends on the stride or at the image's border.
struct TileGeometry {
  int image_height = 0, image_width = 0;
  PixelRect core, extended;
};

struct TileSessionConfig {
  // The largest extended region the session takes.
  int max_tile_height = 0, max_tile_width = 0;
  Pooling pooling = Pooling::Avg;
  LossSpec
      loss;  // alpha and the content layers' weights are used here; beta and the style weights are in the coefficients
  // Bytes of the nets that keep tiles' activations between the passes (one
  // net per tile shape it has seen, several of one shape when they fit; at
  // least one net however small this is).
  double net_budget_bytes = 0;
};

// What a tile's content loss compares against: per content layer the content
// image's activations at the core's positions (core rows x core columns x C,
// row-major), or the content image's pixels of the extended region, which
// the session forwards first (and keeps with the tile's activations).
struct TileContent {
  std::vector<const float*> targets;
  const float* pixels = nullptr;
};

// What a tile session did, for tests and benchmarks.
struct TileStats {
  double nets_built = 0;       // nets created (one per shape change the budget could not keep)
  double forwards = 0;         // forward passes of images, content and style tiles
  double forwards_reused = 0;  // pass-2 tiles whose pass-1 activations were still held
  double net_bytes = 0;        // bytes of the nets held now
  double peak_net_bytes = 0;
};

class TileSession {
 public:
  virtual ~TileSession() = default;
  // Forwards `pixels` (the extended region, H x W x 3) and writes each style
  // layer's Gram sum over the core, A^T A (C x C, not divided by N), into
  // grams[l]: the style targets of a style image too large for one pass.
  virtual void gram_sums(const TileGeometry& tile, const float* pixels, const std::vector<float*>& grams) = 0;
  // The core's activations at each content layer into out[k] (core rows x
  // core columns x C at that layer): the content targets.
  virtual void content_activations(const TileGeometry& tile, const float* pixels, const std::vector<float*>& out) = 0;
  // Pass 1: the core's Gram sums into grams[l] and its share of the content
  // loss (sum_c w_c J_content^[c] over the core, normalised by the whole
  // image's layer sizes) returned. The activations stay with `tag` (nonzero)
  // while the net budget allows, for backward().
  virtual double forward(const TileGeometry& tile, const float* pixels, const TileContent& content, uint64_t tag,
                         const std::vector<float*>& grams) = 0;
  // Pass 2: d J / d A = A coef_l (C x C per style layer: beta w_l (Ghat - T)
  // / (C^2 N), symmetric) and the content term alpha w (a - t) / (2 N C), on
  // the core's positions only, backpropagated to the extended region's
  // pixels (H x W x 3) into gradient_out. Forwards again unless the
  // activations of `tag` are still held.
  virtual void backward(const TileGeometry& tile, const float* pixels, const TileContent& content, uint64_t tag,
                        const std::vector<const float*>& style_coefficients, float* gradient_out) = 0;
  virtual TileStats stats() const = 0;
};

// The bytes a tile session plans for, in the memory the engine computes in:
// what it holds whatever the tiles (the weights and their reordered copies,
// the generated code, its scratch), and one net per tile shape.
struct TileMemory {
  double fixed = 0;
  std::vector<double> net_per_shape;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // e.g. "cpu (oneDNN 2.6.3, 2 threads)" or "cuda (NVIDIA H100, cuDNN 9.x, tf32)"
  virtual std::string describe() const = 0;
  // A prefix of VGG-19: layers[i] is conv layer i. Copies what it needs.
  virtual void set_weights(const std::vector<ConvWeightsView>& layers) = 0;
  // Throws Error::too_large (field "size") when the session cannot fit.
  virtual std::unique_ptr<Session> create_session(const SessionConfig& config) = 0;
  // The peak bytes a session of `config` needs, with its weights and its
  // targets (style images of `style_sizes`), in the memory the engine
  // computes in, from the engine's plan of its own buffers; infinity when the
  // engine cannot take the shape at any memory. Allocates nothing. The config
  // passed validate_session_config.
  virtual double estimate_memory(const SessionConfig& config, const std::vector<ImageSize>& style_sizes,
                                 const MaskShape& masks) const = 0;
  // Bytes the engine may still allocate, where it computes in a device's
  // memory (cuda: the GPU's free memory); none where it computes in host
  // memory, which the caller measures.
  virtual std::optional<double> device_memory_available() const { return std::nullopt; }
  // Exact tiling (above). The config passed validate_tile_session_config.
  virtual std::unique_ptr<TileSession> create_tile_session(const TileSessionConfig& config) = 0;
  // The bytes of a tile session of `config` whose tiles have the shapes
  // `tile_shapes` (extended regions); allocates nothing.
  virtual TileMemory estimate_tile_memory(const TileSessionConfig& config,
                                          const std::vector<ImageSize>& tile_shapes) const = 0;
};

// The arithmetic of the convolutions and Gram products. The engines
// implement some of them (kCpuPrecisions, kCudaPrecisions); nothing else is
// offered. (TF32: tensor cores round the products' inputs to 10 mantissa bits.
// BF16, cpu: the convolutions forward and backward-data take and give
// bfloat16 (8 mantissa bits) and accumulate in float32; the Gram matrices,
// losses, their gradients, the image and the optimiser state stay float32.)
enum class Precision { Fp32, Tf32, Bf16 };
struct NamedPrecision {
  Precision precision;
  const char* name;  // as the job model names it
};
inline constexpr NamedPrecision kCpuPrecisions[] = {{Precision::Fp32, "fp32"}, {Precision::Bf16, "bf16"}};
inline constexpr NamedPrecision kCudaPrecisions[] = {{Precision::Fp32, "fp32"}, {Precision::Tf32, "tf32"}};

// Factories. Each throws nst::Error (code Unsupported, field "backend", or
// NotFound and "gpu" for a GPU that is not there) with a one-line reason when
// unavailable (no GPU, cuDNN not found: say what was searched), and
// (Unsupported, "precision") for a precision the machine cannot run natively
// (cpu bf16 without AVX512-BF16 or AMX-BF16: the line names them).
struct CpuOptions {
  Precision precision = Precision::Fp32;
};
std::unique_ptr<Engine> make_cpu_engine(const CpuOptions& options = {});
// What `--precision auto` means on the cpu engine: fp32, on every processor.
// bf16 runs only when asked for, where the processor has native bf16. The
// quality proof of issue 24 (docs/bf16/README.md: 400x300, 200 Adam steps,
// bf16 against fp32 from the same start, the final images scored in fp32)
// holds on the VGG-19 blocks 1-3 weights (the bf16 image's loss +0.65%) but
// not on random full VGG-19 with the notebook's layers (+1.3%, over the 1%
// that auto may give away), so auto does not choose it.
Precision cpu_auto_precision();
struct CudaOptions {
  int device = 0;
  Precision precision = Precision::Tf32;
};
std::unique_ptr<Engine> make_cuda_engine(const CudaOptions& options);

// The VGG-19 conv stack shape, shared by both engines.
struct VggLayerShape {
  const char* name;
  int in_channels;
  int out_channels;
  bool pool_after;
};
inline constexpr VggLayerShape kVgg19[16] = {
    {"conv1_1", 3, 64, false},    {"conv1_2", 64, 64, true},    {"conv2_1", 64, 128, false},
    {"conv2_2", 128, 128, true},  {"conv3_1", 128, 256, false}, {"conv3_2", 256, 256, false},
    {"conv3_3", 256, 256, false}, {"conv3_4", 256, 256, true},  {"conv4_1", 256, 512, false},
    {"conv4_2", 512, 512, false}, {"conv4_3", 512, 512, false}, {"conv4_4", 512, 512, true},
    {"conv5_1", 512, 512, false}, {"conv5_2", 512, 512, false}, {"conv5_3", 512, 512, false},
    {"conv5_4", 512, 512, true},
};

// Floats of the kernels (3 x 3 x in x out) and biases of conv layers [0, num_layers).
inline size_t vgg_weight_floats(int num_layers) {
  size_t floats = 0;
  for (int i = 0; i < num_layers; i++)
    floats += size_t(9) * kVgg19[i].in_channels * kVgg19[i].out_channels + kVgg19[i].out_channels;
  return floats;
}

}  // namespace nst
