// A CUDA session: VGG-19 forward on cuDNN, losses and their gradients in our
// own kernels and cuBLAS, backward to the pixels, Adam, all on one stream;
// each optimisation step is captured once into a CUDA graph (graph.h) and
// replayed.
//
// Data flow of one step (per batch of N images, NHWC):
//   x -> conv_i -> bias+ReLU -> a_i [-> pool -> p_i] ... up to the deepest loss layer
//   style layer l:   G_l = A^T A / N (cuBLAS), D_l = coef (G_l - G_target) (+ loss)
//   backward, i from deepest to 0, g = dJ/da_i:
//     g += D_l A_l (cuBLAS)                      if style at i
//     g = (g + c (a_i - a_target)) * (a_i > 0)   ReLU mask, content loss fused
//     g' = conv_i^T g (cuDNN backward data)
//     g = pool^T g' * (a_{i-1} > 0)              if a pool sits between (mask fused)
//   dx += TV gradient (+ temporal gradient, video); Adam(x, m, v, dx) with lr_t from device memory.
#include "cuda/session.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/graph.h"
#include "cuda/kernels.h"
#include "cuda/memory_plan.h"
#include "session_config.h"
#include "style_regions.h"

namespace nst::cuda {
namespace {

class CudaSession : public Session {
 public:
  CudaSession(std::shared_ptr<DeviceContext> ctx, const SessionConfig& config) : ctx_(std::move(ctx)), config_(config) {
    // The config passed validate_session_config (the addon calls it).
    num_layers_ = deepest_layer(config_.loss) + 1;
    ctx_->activate();
    check_memory();
    pass_ = std::make_unique<Pass>(*ctx_, config_.batch, config_.height, config_.width, num_layers_, true);
    const int b = config_.batch;
    size_t largest = 0;
    for (int i = 0; i < num_layers_; i++) {
      const LayerGeometry& g = pass_->geometry[i];
      largest = std::max(largest, size_t(b) * g.height * g.width * std::max(g.in_channels, g.out_channels));
    }
    grad_[0] = DeviceBuffer(largest * sizeof(float), "gradient buffer");
    grad_[1] = DeviceBuffer(largest * sizeof(float), "gradient buffer");
    image_floats_ = size_t(b) * config_.height * config_.width * 3;
    for (DeviceBuffer* buf : {&x_, &m_, &v_, &dx_, &staging_}) *buf = DeviceBuffer(image_floats_ * 4, "image state");
    for (const auto& c : config_.loss.content) {
      content_targets_.emplace_back(pass_->map_floats(c.conv_index) * 4, "content targets");
    }
    for (const auto& s : config_.loss.style) {
      size_t gram_bytes = size_t(b) * kVgg19[s.conv_index].out_channels * kVgg19[s.conv_index].out_channels * 4;
      style_targets_.emplace_back(gram_bytes, "style targets");
      style_diffs_.emplace_back(gram_bytes, "style Gram buffer");
    }
    if (config_.loss.temporal_weight != 0.f) {
      temporal_image_ = DeviceBuffer(image_floats_ * 4, "temporal targets");
      temporal_weights_ = DeviceBuffer(image_floats_ / 3 * 4, "temporal targets");
    }
    losses_ = DeviceBuffer(sizeof(double) * b * kernels::kLossSlots, "loss accumulators");
    step_sizes_ = DeviceBuffer(sizeof(float) * kStepChunk, "step sizes");
    step_index_ = DeviceBuffer(sizeof(int), "step index");
    ensure_workspace(pass_->workspace());
    // Zeroed so that a session used before set_targets/set_images is defined.
    std::vector<DeviceBuffer*> zeroed = {&x_, &m_, &v_};
    for (auto* group : {&content_targets_, &style_targets_}) {
      for (DeviceBuffer& t : *group) zeroed.push_back(&t);
    }
    if (temporal_image_.bytes() != 0) zeroed.insert(zeroed.end(), {&temporal_image_, &temporal_weights_});
    for (DeviceBuffer* buf : zeroed) {
      check_cuda(cudaMemsetAsync(buf->get(), 0, buf->bytes(), ctx_->stream), "cudaMemsetAsync (session buffers)");
    }
    ctx_->sync("session setup");
    // Last: nothing may throw after it (the destructor frees it, and does not
    // run for a constructor that threw).
    check_cuda(cudaMallocHost(&host_losses_, sizeof(double) * b * kernels::kLossSlots), "cudaMallocHost (losses)");
    weights_version_ = ctx_->weights_version;
    if (verbose()) {
      std::fprintf(stderr, "nst cuda: session %dx%d batch %d: %zu bytes allocated (workspace %zu)\n", config_.width,
                   config_.height, b, allocated_bytes(), workspace_.bytes());
    }
  }

  ~CudaSession() override {
    if (host_losses_) cudaFreeHost(host_losses_);
  }

  const SessionConfig& config() const override { return config_; }

  void set_targets(const std::vector<TargetsView>& targets) override {
    ctx_->activate();
    check_weights();
    if (int(targets.size()) != config_.batch) {
      throw Error("cuda: set_targets got " + std::to_string(targets.size()) + " targets for a batch of " +
                  std::to_string(config_.batch));
    }
    set_masks(targets);
    set_content_targets(targets);
    set_style_targets(targets);
    set_temporal_targets(targets);
    ctx_->sync("set_targets");
  }

  void set_images(const float* images) override {
    ctx_->activate();
    upload(x_, images, "cudaMemcpyAsync (images)");
    check_cuda(cudaMemsetAsync(m_.get(), 0, m_.bytes(), ctx_->stream), "cudaMemsetAsync (Adam m)");
    check_cuda(cudaMemsetAsync(v_.get(), 0, v_.bytes(), ctx_->stream), "cudaMemsetAsync (Adam v)");
    ctx_->sync("set_images");
  }

  std::vector<LossValues> iterate(const AdamParams& adam, const std::function<void(int)>& progress) override {
    ctx_->activate();
    check_weights();
    const int total = int(adam.step_sizes.size());
    if (total == 0) {
      if (Profiler::requested()) ctx_->profiler.begin(ctx_->stream);
      enqueue_step(nullptr);
      ctx_->profiler.end_and_print();
      read_losses_async();
      ctx_->sync("iterate (evaluate)");
      return loss_values();
    }
    if (graph_.ready() &&
        (adam.beta1 != graph_adam_.beta1 || adam.beta2 != graph_adam_.beta2 || adam.eps != graph_adam_.eps)) {
      graph_.reset();  // the Adam constants are baked into the captured launch
    }
    // Progress: every kProgressEvery steps an event; we wait on the previous
    // one, so the queue stays full while the caller hears how far we are.
    cudaEvent_t marks[2];
    for (cudaEvent_t& e : marks) check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    int pending_done = -1, mark = 0;
    try {
      for (int done = 0; done < total;) {
        int chunk = std::min(kStepChunk, total - done);
        check_cuda(cudaMemcpyAsync(step_sizes_.get(), adam.step_sizes.data() + done, sizeof(float) * chunk,
                                   cudaMemcpyHostToDevice, ctx_->stream),
                   "cudaMemcpyAsync (step sizes)");
        check_cuda(cudaMemsetAsync(step_index_.get(), 0, sizeof(int), ctx_->stream), "cudaMemsetAsync (step index)");
        for (int k = 0; k < chunk; k++, done++) {
          run_update_step(adam);
          if (done == 0) read_losses_async();
          if ((done + 1) % kProgressEvery == 0 || done + 1 == total) {
            check_cuda(cudaEventRecord(marks[mark], ctx_->stream), "cudaEventRecord");
            if (pending_done >= 0) {
              check_cuda(cudaEventSynchronize(marks[1 - mark]), "cudaEventSynchronize (iterate)");
              if (progress) progress(pending_done);
            }
            pending_done = done + 1;
            mark = 1 - mark;
          }
        }
      }
      ctx_->sync("iterate");
    } catch (...) {
      for (cudaEvent_t e : marks) cudaEventDestroy(e);
      throw;
    }
    for (cudaEvent_t e : marks) cudaEventDestroy(e);
    if (progress) progress(total);
    return loss_values();
  }

  std::vector<LossValues> loss_and_gradient(float* gradient_out) override {
    ctx_->activate();
    check_weights();
    enqueue_step(nullptr);
    read_losses_async();
    check_cuda(cudaMemcpyAsync(gradient_out, dx_.get(), dx_.bytes(), cudaMemcpyDeviceToHost, ctx_->stream),
               "cudaMemcpyAsync (gradient)");
    ctx_->sync("loss_and_gradient");
    return loss_values();
  }

  void read_images(float* out) const override { download(x_, out, "cudaMemcpyAsync (read images)"); }
  void read_optimizer_state(float* m_out, float* v_out) const override {
    download(m_, m_out, "cudaMemcpyAsync (read Adam m)");
    download(v_, v_out, "cudaMemcpyAsync (read Adam v)");
  }
  void write_optimizer_state(const float* m, const float* v) override {
    ctx_->activate();
    upload(m_, m, "cudaMemcpyAsync (write Adam m)");
    upload(v_, v, "cudaMemcpyAsync (write Adam v)");
    ctx_->sync("write_optimizer_state");
  }

 private:
  static constexpr int kProgressEvery = 32;

  // Before anything is allocated: the session's plan against the free
  // memory (infinity when cuDNN could not take one of its tensors).
  void check_memory() const {
    const SessionShape shape = session_shape(config_, ctx_->fused_conv);
    const double needed = within_tensor_limit(shape) ? double(required_bytes(shape)) : kBeyondTensorLimit;
    const double free_bytes = free_device_memory();
    if (needed > free_bytes) {
      throw Error::too_large("size", needed, free_bytes,
                             "cuda: a " + std::to_string(config_.width) + "x" + std::to_string(config_.height) +
                                 " batch " + std::to_string(config_.batch) + " session " + need_text(needed) + " but " +
                                 std::to_string(size_t(free_bytes)) + " bytes are free on " + ctx_->device_name);
    }
  }

  void check_weights() {
    if (ctx_->weights_version != weights_version_) {
      // New weight buffers: the captured graph points at the old ones.
      graph_.reset();
      weights_version_ = ctx_->weights_version;
    }
    if (num_layers_ > int(ctx_->layers.size())) {
      throw Error("cuda: the session needs " + std::to_string(num_layers_) + " conv layers but only " +
                  std::to_string(ctx_->layers.size()) + " are loaded");
    }
  }

  size_t allocated_bytes() const {
    size_t total = grad_[0].bytes() + grad_[1].bytes() + losses_.bytes() + step_sizes_.bytes();
    for (const DeviceBuffer* b : {&x_, &m_, &v_, &dx_, &staging_, &temporal_image_, &temporal_weights_}) {
      total += b->bytes();
    }
    for (const auto& b : pass_->acts) total += b.bytes();
    for (const auto& b : pass_->pooled) total += b.bytes();
    for (const auto& b : content_targets_) total += b.bytes();
    for (const auto& b : style_targets_) total += 2 * b.bytes();
    for (const auto* group : {&region_masks_, &content_masks_})
      for (const auto& b : *group) total += b.bytes();
    return total + mask_scratch_.bytes();
  }

  void ensure_workspace(size_t bytes) {
    if (bytes <= workspace_.bytes()) return;
    graph_.reset();  // the graph holds the old workspace pointer
    // Work already queued (the content-target forward) may still use the old
    // workspace: don't rely on cudaFree's implicit synchronisation.
    ctx_->sync("workspace resize");
    workspace_ = DeviceBuffer();
    workspace_ = DeviceBuffer(bytes, "cuDNN workspace");
  }

  void upload(DeviceBuffer& dst, const float* src, const char* what) {
    check_cuda(cudaMemcpyAsync(dst.get(), src, dst.bytes(), cudaMemcpyHostToDevice, ctx_->stream), what);
  }
  void download(const DeviceBuffer& src, float* dst, const char* what) const {
    ctx_->activate();
    check_cuda(cudaMemcpyAsync(dst, src.get(), src.bytes(), cudaMemcpyDeviceToHost, ctx_->stream), what);
    ctx_->sync(what);
  }

  // Spatial control: where each item's style regions sit among the style
  // targets (slot b for item b without masks: the unmasked layout and
  // buffers), their masks and masses, and the content masks. The step graph
  // bakes in the masses and the buffers: it is captured again after masks.
  void set_masks(const std::vector<TargetsView>& targets) {
    const LossSpec& loss = config_.loss;
    std::vector<size_t> positions;
    for (const auto& l : loss.style)
      positions.push_back(pass_->map_floats(l.conv_index) / config_.batch /
                          size_t(pass_->geometry[l.conv_index].out_channels));
    RegionLayout layout = region_layout(targets, positions);
    bool content_masked = false, regions = false;
    for (const auto& t : targets) {
      content_masked = content_masked || (!t.content_mask.empty() && !loss.content.empty());
      for (const auto& st : t.styles) regions = regions || !st.region.empty();
    }
    if (masked_ || layout.masked() || content_masked || !content_masks_.empty()) graph_.reset();
    masked_ = layout.masked();
    region_first_ = layout.first;
    regions_.clear();
    for (const RegionSlot& slot : layout.slots) regions_.push_back({slot.item, !slot.mask.empty(), slot.mass});
    region_masks_.clear();
    mask_scratch_ = DeviceBuffer();
    const size_t slots = layout.slots.size();
    size_t scratch = 0;
    for (size_t l = 0; l < loss.style.size(); l++) {
      const size_t c = size_t(kVgg19[loss.style[l].conv_index].out_channels);
      if (style_targets_[l].bytes() != slots * c * c * 4) {
        style_targets_[l] = DeviceBuffer();
        style_diffs_[l] = DeviceBuffer();
        style_targets_[l] = DeviceBuffer(slots * c * c * 4, "style targets");
        style_diffs_[l] = DeviceBuffer(slots * c * c * 4, "style Gram buffer");
      }
      scratch = std::max(scratch, positions[l] * c);
      if (!masked_) continue;
      region_masks_.emplace_back(slots * positions[l] * 4, "style masks");
      for (size_t k = 0; k < slots; k++)
        if (!layout.slots[k].mask.empty())
          check_cuda(cudaMemcpyAsync(region_masks_[l].f() + k * positions[l], layout.slots[k].mask[l], positions[l] * 4,
                                     cudaMemcpyHostToDevice, ctx_->stream),
                     "cudaMemcpyAsync (style masks)");
    }
    if (masked_ || regions) mask_scratch_ = DeviceBuffer(scratch * 4, "masked activations");
    content_masks_.clear();
    if (!content_masked) return;
    for (const auto& c : loss.content) {
      const size_t n = pass_->map_floats(c.conv_index) / config_.batch / size_t(kVgg19[c.conv_index].out_channels);
      std::vector<float> weights(size_t(config_.batch) * n, 1.f);  // an item without a mask: weight 1
      for (int b = 0; b < config_.batch; b++)
        if (!targets[b].content_mask.empty())
          std::copy_n(targets[b].content_mask[content_masks_.size()], n, weights.begin() + b * n);
      content_masks_.emplace_back(weights.size() * 4, "content masks");
      upload(content_masks_.back(), weights.data(), "cudaMemcpyAsync (content masks)");
      ctx_->sync("content masks");  // `weights` is freed next
    }
  }

  // Content targets: the content images' activations at the content layers.
  void set_content_targets(const std::vector<TargetsView>& targets) {
    if (config_.loss.content.empty()) return;
    const size_t per_image = size_t(config_.height) * config_.width * 3;
    for (int b = 0; b < config_.batch; b++) {
      const ImageView& img = targets[b].content;
      if (img.height != config_.height || img.width != config_.width) {
        throw Error("cuda: content image " + std::to_string(b) + " is " + std::to_string(img.width) + "x" +
                    std::to_string(img.height) + " but the session is " + std::to_string(config_.width) + "x" +
                    std::to_string(config_.height));
      }
      check_cuda(
          cudaMemcpyAsync(staging_.f() + b * per_image, img.data, per_image * 4, cudaMemcpyHostToDevice, ctx_->stream),
          "cudaMemcpyAsync (content image)");
    }
    const int upto = deepest_layer(config_.loss.content) + 1;
    pass_->forward(*ctx_, staging_.f(), upto, workspace_.get(), workspace_.bytes(), max_pool());
    for (size_t k = 0; k < config_.loss.content.size(); k++) {
      const DeviceBuffer& a = pass_->acts[config_.loss.content[k].conv_index];
      check_cuda(cudaMemcpyAsync(content_targets_[k].get(), a.get(), a.bytes(), cudaMemcpyDeviceToDevice, ctx_->stream),
                 "cudaMemcpyAsync (content targets)");
    }
  }

  // Style targets: per batch item sum_k weight_k Ghat(style_k), each style
  // image run alone at its own size in a temporary forward-only Pass (its
  // algorithms come from the engine's per-shape cache).
  void set_style_targets(const std::vector<TargetsView>& targets) {
    if (config_.loss.style.empty()) return;
    for (auto& t : style_targets_) {
      check_cuda(cudaMemsetAsync(t.get(), 0, t.bytes(), ctx_->stream), "cudaMemsetAsync (style targets)");
    }
    const int upto = deepest_layer(config_.loss.style) + 1;
    for (int b = 0; b < config_.batch; b++) {
      if (targets[b].styles.empty()) throw Error("cuda: batch item " + std::to_string(b) + " has no style image");
      for (const StyleImageView& style : targets[b].styles) {
        const ImageView& img = style.image;
        check_style_pass(style_pass_shape(config_, {img.height, img.width}, ctx_->fused_conv));
        Pass pass(*ctx_, 1, img.height, img.width, upto, false);
        ensure_workspace(pass.workspace());
        DeviceBuffer input(size_t(img.height) * img.width * 3 * 4, "style image");
        check_cuda(cudaMemcpyAsync(input.get(), img.data, input.bytes(), cudaMemcpyHostToDevice, ctx_->stream),
                   "cudaMemcpyAsync (style image)");
        pass.forward(*ctx_, input.f(), upto, workspace_.get(), workspace_.bytes(), max_pool());
        for (size_t l = 0; l < config_.loss.style.size(); l++) {
          int i = config_.loss.style[l].conv_index;
          const LayerGeometry& g = pass.geometry[i];
          long long pixels = (long long)g.height * g.width;
          int c = g.out_channels;
          float* target = style_targets_[l].f() + size_t(region_first_[b] + style.mask_index) * c * c;
          if (style.region.empty()) {
            gram(*ctx_, pass.acts[i].f(), target, c, pixels, 1, style.weight / float(pixels), 1.f);
            continue;
          }
          // The guided Gram of the style under its region: (A o r)^T (A o r) / sum r.
          DeviceBuffer region(size_t(pixels) * 4, "style region"), masked(size_t(pixels) * c * 4, "style region");
          check_cuda(
              cudaMemcpyAsync(region.get(), style.region[l], region.bytes(), cudaMemcpyHostToDevice, ctx_->stream),
              "cudaMemcpyAsync (style region)");
          kernels::launch_mask_rows(masked.f(), pass.acts[i].f(), region.f(), size_t(pixels), c, ctx_->stream);
          check_launch("mask_rows kernel");
          gram(*ctx_, masked.f(), target, c, pixels, 1, float(style.weight / region_mass(style, l, i)), 1.f);
          ctx_->sync("style region");  // its buffers are freed next
        }
        ctx_->sync("style targets");  // the pass's buffers are freed next
      }
    }
  }

  // Temporal targets (video): each item's warped previous frame and pixel
  // weights; an item without one gets weight 0 everywhere (no term).
  void set_temporal_targets(const std::vector<TargetsView>& targets) {
    if (temporal_image_.bytes() == 0) return;
    const size_t pixels = size_t(config_.height) * config_.width;
    for (int b = 0; b < config_.batch; b++) {
      float* image = temporal_image_.f() + b * pixels * 3;
      float* weights = temporal_weights_.f() + b * pixels;
      if (const auto& t = targets[b].temporal) {
        check_cuda(cudaMemcpyAsync(image, t->image, pixels * 3 * 4, cudaMemcpyHostToDevice, ctx_->stream),
                   "cudaMemcpyAsync (temporal target)");
        check_cuda(cudaMemcpyAsync(weights, t->weights, pixels * 4, cudaMemcpyHostToDevice, ctx_->stream),
                   "cudaMemcpyAsync (temporal weights)");
      } else {
        check_cuda(cudaMemsetAsync(weights, 0, pixels * 4, ctx_->stream), "cudaMemsetAsync (temporal weights)");
      }
    }
  }

  // A style image runs alone in its own pass: within cuDNN's tensor limit,
  // and within the free memory with its maps and the workspace growth.
  void check_style_pass(const SessionShape& s) const {
    const double needed = within_tensor_limit(s) ? double(style_pass_bytes(s, workspace_.bytes())) : kBeyondTensorLimit;
    const double free_bytes = free_device_memory();
    if (needed > free_bytes) {
      throw Error::too_large("styleScale", needed, free_bytes,
                             "cuda: style image " + std::to_string(s.width) + "x" + std::to_string(s.height) + " " +
                                 need_text(needed) + " but " + std::to_string(size_t(free_bytes)) +
                                 " bytes are free on " + ctx_->device_name);
    }
  }

  static constexpr double kBeyondTensorLimit = std::numeric_limits<double>::infinity();

  static std::string need_text(double needed) {
    return needed == kBeyondTensorLimit
               ? "has a tensor beyond the 2^31 - 1 elements that cuDNN's tensor descriptors can hold"
               : "needs " + std::to_string(size_t(needed)) + " bytes";
  }

  double free_device_memory() const {
    size_t free_bytes = 0, total_bytes = 0;
    check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    return double(free_bytes);
  }

  bool max_pool() const { return config_.pooling == Pooling::Max; }

  // Forward, losses, backward to dx_ (incl. TV); then Adam when `adam`.
  void enqueue_step(const AdamParams* adam) {
    DeviceContext& ctx = *ctx_;
    const LossSpec& loss = config_.loss;
    const int b = config_.batch;
    check_cuda(cudaMemsetAsync(losses_.get(), 0, losses_.bytes(), ctx.stream), "cudaMemsetAsync (losses)");
    pass_->forward(ctx, x_.f(), num_layers_, workspace_.get(), workspace_.bytes(), max_pool());
    double* loss_acc = static_cast<double*>(losses_.get());

    // Style: Gram of the generated image, difference to the target, loss.
    for (size_t l = 0; l < loss.style.size() && masked_; l++) masked_style_grams(l, loss_acc);
    for (size_t l = 0; l < loss.style.size() && !masked_; l++) {
      const WeightedLayer& s = loss.style[l];
      const LayerGeometry& g = pass_->geometry[s.conv_index];
      long long pixels = (long long)g.height * g.width;
      float c = float(g.out_channels);
      gram(ctx, pass_->acts[s.conv_index].f(), style_diffs_[l].f(), g.out_channels, pixels, b, 1.f / float(pixels),
           0.f);
      ctx.profiler.mark("cuBLAS", std::string("Gram ") + kVgg19[s.conv_index].name);
      kernels::launch_style_gram_diff(style_diffs_[l].f(), style_targets_[l].f(), g.out_channels, b,
                                      s.weight / (4 * c * c), loss.beta * s.weight / (c * c * float(pixels)), loss_acc,
                                      ctx.stream);
      check_launch("style_gram_diff kernel");
      ctx.profiler.mark("own kernels", std::string("style Gram difference ") + kVgg19[s.conv_index].name);
    }

    // Backward from the deepest layer to the pixels.
    const float one = 1.f, zero = 0.f;
    int cur = 0;
    float* g = grad_[cur].f();
    check_cuda(cudaMemsetAsync(g, 0, pass_->map_floats(num_layers_ - 1) * 4, ctx.stream),
               "cudaMemsetAsync (top gradient)");
    bool g_masked = false;
    for (int i = num_layers_ - 1; i >= 0; i--) {
      const LayerGeometry& geo = pass_->geometry[i];
      const float* a = pass_->acts[i].f();
      const long long pixels = (long long)geo.height * geo.width;
      for (size_t l = 0; l < loss.style.size(); l++) {
        if (loss.style[l].conv_index != i) continue;
        g_masked = false;
        if (masked_) {
          masked_style_gradient(l, g);
          continue;
        }
        // g += D A: in column-major terms dX (c x N) += D (c x c) X (c x N).
        check_cublas(ctx.api,
                     ctx.api.cublasSgemmStridedBatched(ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, geo.out_channels,
                                                       int(pixels), geo.out_channels, &one, style_diffs_[l].f(),
                                                       geo.out_channels, (long long)geo.out_channels * geo.out_channels,
                                                       a, geo.out_channels, pixels * geo.out_channels, &one, g,
                                                       geo.out_channels, pixels * geo.out_channels, b),
                     "cublasSgemmStridedBatched (style gradient)");
        ctx.profiler.mark("cuBLAS", std::string("style gradient ") + kVgg19[i].name);
        g_masked = false;
      }
      const int k = entry_at_layer(loss.content, i);
      const float* content_target = k >= 0 ? content_targets_[k].f() : nullptr;
      const float content_weight = k >= 0 ? loss.content[k].weight : 0.f;
      if (content_target && !content_masks_.empty()) {
        // The content term weighted per position, then the ReLU's backward alone.
        const float n_c = float(pixels) * float(geo.out_channels);
        kernels::launch_masked_content(g, a, content_target, content_masks_[k].f(), size_t(pixels), geo.out_channels, b,
                                       loss.alpha * content_weight / (2 * n_c), content_weight / (4 * n_c), loss_acc,
                                       ctx.stream);
        check_launch("masked_content kernel");
        kernels::launch_relu_backward(g, a, nullptr, 0.f, 0.f, loss_acc, pass_->map_floats(i) / b, b, ctx.stream);
        check_launch("relu_backward kernel");
        ctx.profiler.mark("own kernels", std::string("relu backward + masked content ") + kVgg19[i].name);
      } else if (content_target || !g_masked) {
        const float n_c = float(pixels) * float(geo.out_channels);
        kernels::launch_relu_backward(g, a, content_target, loss.alpha * content_weight / (2 * n_c),
                                      content_weight / (4 * n_c), loss_acc, pass_->map_floats(i) / b, b, ctx.stream);
        check_launch("relu_backward kernel");
        ctx.profiler.mark("own kernels",
                          std::string(content_target ? "relu backward + content " : "relu backward ") + kVgg19[i].name);
      }
      // Through the convolution to its input.
      const ConvPlan& conv = *pass_->convs[i];
      float* out = i == 0 ? dx_.f() : grad_[1 - cur].f();
      check_cudnn(
          ctx.api,
          ctx.api.cudnnConvolutionBackwardData(ctx.cudnn, &one, ctx.layers[i].filter->get(), ctx.layers[i].kernel.get(),
                                               conv.y.get(), g, conv.bwd_conv->get(), conv.bwd.algo, workspace_.get(),
                                               workspace_.bytes(), &zero, conv.x.get(), out),
          "cudnnConvolutionBackwardData");
      ctx.profiler.mark("conv backward-data", kVgg19[i].name);
      if (i == 0) break;
      const LayerGeometry& below = pass_->geometry[i - 1];
      if (below.pool_after) {
        // Back through the pool into the (free again) buffer g was in; the
        // ReLU mask of a_{i-1} is fused unless a loss term must be added first.
        bool loss_below = has_loss_at(i - 1);
        kernels::launch_pool_backward(out, pass_->acts[i - 1].f(), g, b, below.height, below.width, below.out_channels,
                                      max_pool(), !loss_below, ctx.stream);
        check_launch("pool_backward kernel");
        ctx.profiler.mark("own kernels", std::string("pool backward ") + kVgg19[i - 1].name);
        g_masked = !loss_below;
      } else {
        cur = 1 - cur;
        g = out;
        g_masked = false;
      }
    }
    kernels::launch_tv_loss_grad(x_.f(), dx_.f(), b, config_.height, config_.width, loss.tv_weight, loss_acc,
                                 ctx.stream);
    check_launch("tv_loss_grad kernel");
    ctx.profiler.mark("own kernels", "tv loss+gradient");
    if (temporal_image_.bytes() != 0) {
      kernels::launch_temporal_loss_grad(x_.f(), temporal_image_.f(), temporal_weights_.f(), dx_.f(), b, config_.height,
                                         config_.width, loss.temporal_weight, loss_acc, ctx.stream);
      check_launch("temporal_loss_grad kernel");
      ctx.profiler.mark("own kernels", "temporal loss+gradient");
    }
    if (adam) {
      kernels::launch_adam(x_.f(), m_.f(), v_.f(), dx_.f(), image_floats_, adam->beta1, adam->beta2, adam->eps,
                           step_sizes_.f(), static_cast<const int*>(step_index_.get()), ctx.stream);
      check_launch("adam kernel");
      kernels::launch_advance_step(static_cast<int*>(step_index_.get()), ctx.stream);
      check_launch("advance_step kernel");
    }
  }

  // With style masks, style layer l per region slot (batch 1 each: items
  // have their own masks): an unmasked region as the batched path computes
  // it, a masked one on B = A o m with Ghat = B^T B / sum m and the
  // coefficient beta w / (C^2 sum m); a mask without mass adds nothing.
  void masked_style_grams(size_t l, double* loss_acc) {
    DeviceContext& ctx = *ctx_;
    const WeightedLayer& s = config_.loss.style[l];
    const LayerGeometry& g = pass_->geometry[s.conv_index];
    const long long pixels = (long long)g.height * g.width;
    const int c = g.out_channels;
    const float cf = float(c);
    for (size_t k = 0; k < regions_.size(); k++) {
      const Region& r = regions_[k];
      const float* a = pass_->acts[s.conv_index].f() + size_t(r.item) * pixels * c;
      float* diff = style_diffs_[l].f() + k * c * c;
      double mass = double(pixels);
      if (r.masked) {
        mass = r.mass[l];
        if (!(mass > 0)) continue;
        kernels::launch_mask_rows(mask_scratch_.f(), a, region_masks_[l].f() + k * pixels, size_t(pixels), c,
                                  ctx.stream);
        check_launch("mask_rows kernel");
        a = mask_scratch_.f();
      }
      gram(ctx, a, diff, c, pixels, 1, float(1.0 / mass), 0.f);
      kernels::launch_style_gram_diff(diff, style_targets_[l].f() + k * c * c, c, 1, s.weight / (4 * cf * cf),
                                      r.masked ? float(config_.loss.beta * s.weight / (double(c) * c * mass))
                                               : config_.loss.beta * s.weight / (cf * cf * float(pixels)),
                                      loss_acc + size_t(r.item) * kernels::kLossSlots, ctx.stream);
      check_launch("style_gram_diff kernel");
    }
    ctx.profiler.mark("own kernels", std::string("masked style Grams ") + kVgg19[s.conv_index].name);
  }

  // g += D A per region slot, a masked region's A as (A o m) o m.
  void masked_style_gradient(size_t l, float* g) {
    DeviceContext& ctx = *ctx_;
    const int i = config_.loss.style[l].conv_index;
    const LayerGeometry& geo = pass_->geometry[i];
    const long long pixels = (long long)geo.height * geo.width;
    const int c = geo.out_channels;
    const float one = 1.f;
    for (size_t k = 0; k < regions_.size(); k++) {
      const Region& r = regions_[k];
      const float* a = pass_->acts[i].f() + size_t(r.item) * pixels * c;
      if (r.masked) {
        if (!(r.mass[l] > 0)) continue;
        const float* m = region_masks_[l].f() + k * pixels;
        kernels::launch_mask_rows(mask_scratch_.f(), a, m, size_t(pixels), c, ctx.stream);
        kernels::launch_mask_rows(mask_scratch_.f(), mask_scratch_.f(), m, size_t(pixels), c, ctx.stream);
        check_launch("mask_rows kernel");
        a = mask_scratch_.f();
      }
      check_cublas(ctx.api,
                   ctx.api.cublasSgemmStridedBatched(
                       ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, c, int(pixels), c, &one, style_diffs_[l].f() + k * c * c,
                       c, (long long)c * c, a, c, pixels * c, &one, g + size_t(r.item) * pixels * c, c, pixels * c, 1),
                   "cublasSgemmStridedBatched (masked style gradient)");
    }
    ctx.profiler.mark("cuBLAS", std::string("masked style gradient ") + kVgg19[i].name);
  }

  bool has_loss_at(int i) const {
    return entry_at_layer(config_.loss.content, i) >= 0 || entry_at_layer(config_.loss.style, i) >= 0;
  }

  // One update: eager the first time (cuDNN/cuBLAS warm up), then captured
  // into a CUDA graph once and replayed. If capture is refused (a library
  // call that cannot be captured), we stay eager: slower, still correct.
  void run_update_step(const AdamParams& adam) {
    if (graph_.ready()) {
      graph_.launch(ctx_->stream);
      return;
    }
    if (!warmed_up_ || graph_disabled_) {
      enqueue_step(&adam);
      warmed_up_ = true;
      return;
    }
    const std::string failure = graph_.capture(ctx_->stream, [&] { enqueue_step(&adam); });
    if (!failure.empty()) {
      graph_disabled_ = true;
      std::fprintf(stderr, "nst cuda: CUDA graph capture failed, running steps eagerly (%s)\n", failure.c_str());
      enqueue_step(&adam);
      return;
    }
    graph_adam_ = {adam.beta1, adam.beta2, adam.eps, {}};
    graph_.launch(ctx_->stream);
  }

  void read_losses_async() {
    check_cuda(cudaMemcpyAsync(host_losses_, losses_.get(), losses_.bytes(), cudaMemcpyDeviceToHost, ctx_->stream),
               "cudaMemcpyAsync (losses)");
  }

  std::vector<LossValues> loss_values() const {
    std::vector<LossValues> out(config_.batch);
    const LossSpec& l = config_.loss;
    for (int b = 0; b < config_.batch; b++) {
      LossValues& v = out[b];
      v.content = host_losses_[b * kernels::kLossSlots + kernels::kContentSlot];
      v.style = host_losses_[b * kernels::kLossSlots + kernels::kStyleSlot];
      v.tv = host_losses_[b * kernels::kLossSlots + kernels::kTvSlot];
      v.temporal = host_losses_[b * kernels::kLossSlots + kernels::kTemporalSlot];
      v.total = double(l.alpha) * v.content + double(l.beta) * v.style + double(l.tv_weight) * v.tv +
                double(l.temporal_weight) * v.temporal;
    }
    return out;
  }

  std::shared_ptr<DeviceContext> ctx_;
  SessionConfig config_;
  int num_layers_ = 0;
  int weights_version_ = 0;
  std::unique_ptr<Pass> pass_;
  DeviceBuffer grad_[2];
  size_t image_floats_ = 0;
  DeviceBuffer x_, m_, v_, dx_, staging_;
  DeviceBuffer temporal_image_, temporal_weights_;  // empty without a temporal weight
  std::vector<DeviceBuffer> content_targets_, style_targets_, style_diffs_;
  // Spatial control (set_masks): the region slots (item b's are
  // region_first_[b] up to region_first_[b + 1]), each style layer's region
  // masks (slots x N), one item's A o m, each content layer's mask (batch x N).
  struct Region {
    int item;
    bool masked;
    std::vector<double> mass;  // per style layer
  };
  std::vector<Region> regions_;
  std::vector<int> region_first_;
  bool masked_ = false;
  std::vector<DeviceBuffer> region_masks_, content_masks_;
  DeviceBuffer mask_scratch_;
  DeviceBuffer losses_, step_sizes_, step_index_, workspace_;
  double* host_losses_ = nullptr;
  StepGraph graph_;
  bool warmed_up_ = false, graph_disabled_ = false;
  AdamParams graph_adam_{};
};

}  // namespace

std::unique_ptr<Session> make_session(std::shared_ptr<DeviceContext> ctx, const SessionConfig& config) {
  return std::make_unique<CudaSession>(std::move(ctx), config);
}

}  // namespace nst::cuda
