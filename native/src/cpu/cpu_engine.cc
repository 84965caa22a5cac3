// The CPU engine: VGG-19 on oneDNN plus the fused loss kernels, one whole
// iteration (forward, losses, backward, Adam) per loop turn in C++.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "../engine.h"
#include "../session_config.h"
#include "../style_regions.h"
#include "cpu_features.h"
#include "gram.h"
#include "kernels/adam.cuh"
#include "kernels/masks.cuh"
#include "kernels/relu_backward.cuh"
#include "kernels/style_gram_diff.cuh"
#include "kernels/temporal_loss.cuh"
#include "kernels/tv_loss.cuh"
#include "tile_session.h"
#include "vgg_net.h"

namespace nst {
namespace cpu {

static std::string onednn_version() {
  const dnnl_version_t* v = ::dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

// The layers of these loss terms.
// NHWC at the style layers (the Gram kernels read them as N x C matrices) in
// every net, so that the content net's layouts are the training net's.
// The training net keeps its loss layers' activations for the backward
// (conv1_1's recomputed there); the target nets keep none: the targets are
// taken as their forward visits each layer.
static LayerReads reads_of(const SessionConfig& c, std::vector<bool> kept, bool recompute_first = false) {
  return {std::move(kept), layer_flags(c.loss.style), recompute_first};
}

// The nets a session builds, as plans: the one it optimises (forward and
// backward), the one that computes the content targets (forward, the same
// layer layouts: the content term compares activations element by element),
// and one per style image size for the style targets. The session and its
// memory estimate both build from these.
static VggNetPlan training_plan(const dnnl::engine& engine, const SessionConfig& c, Precision p) {
  std::vector<bool> kept = loss_layer_flags(c.loss);
  const bool recompute_first = kept[0];
  kept[0] = false;
  return {
      engine, c.batch, c.height, c.width, deepest_layer(c.loss), c.pooling, true, reads_of(c, kept, recompute_first),
      p};
}
static VggNetPlan content_plan(const dnnl::engine& engine, const SessionConfig& c, Precision p) {
  return {engine, c.batch, c.height, c.width, deepest_layer(c.loss.content), c.pooling, false, reads_of(c, {}), p};
}
static VggNetPlan style_plan(const dnnl::engine& engine, const SessionConfig& c, ImageSize size, Precision p) {
  return {engine, 1, size.height, size.width, deepest_layer(c.loss.style), c.pooling, false, reads_of(c, {}), p};
}

// The bytes of a session's own buffers besides its nets: the Adam moments m
// and v (an image each, float32), a copy of each content layer's map per item
// (the content targets, in the activations' type: bf16 in bf16), a C x C
// float32 Gram per style layer and item (the style targets), one Gram of
// scratch, in bf16 each style layer's Gram products (Bf16Gram), and with a
// temporal weight the temporal targets (an image and a weight per pixel,
// float32). With masks (fp32 only; set_targets sizes them): a Gram target
// per region instead of per item, each region's mask at each style layer, an
// N x C scratch for A o m, and the content mask at each content layer.
struct SessionBuffers {
  size_t moment = 0;                                   // floats
  std::vector<size_t> content_targets, style_targets;  // elements
  size_t gram_scratch = 0;                             // floats
  size_t temporal_image = 0, temporal_weights = 0;     // floats
  size_t gram_ops = 0;                                 // bytes (bf16)
  size_t content_element_bytes = sizeof(float);
  size_t region_masks = 0, mask_scratch = 0, content_masks = 0;  // floats

  SessionBuffers(const dnnl::engine& engine, const SessionConfig& c, const VggNetPlan& training,
                 const MaskShape& masks = {})
      : moment(size_t(c.batch) * c.height * c.width * 3), content_element_bytes(training.activation_element_bytes()) {
    const size_t regions = size_t(std::max(masks.regions, 1));
    const bool bf16 = content_element_bytes == sizeof(kernels::bf16_bits);
    if (c.loss.temporal_weight != 0.f) {
      temporal_image = moment;
      temporal_weights = moment / 3;
    }
    for (const auto& l : c.loss.content) {
      const LayerShape& s = training.shape(l.conv_index);
      content_targets.push_back(size_t(c.batch) * s.pixels() * s.channels);
      if (masks.content_mask) content_masks += size_t(c.batch) * s.pixels();
    }
    for (const auto& l : c.loss.style) {
      const LayerShape& s = training.shape(l.conv_index);
      const size_t channels = s.channels;
      style_targets.push_back(size_t(c.batch) * regions * channels * channels);
      gram_scratch = std::max(gram_scratch, channels * channels);
      if (masks.regions > 0) {
        region_masks += size_t(c.batch) * regions * s.pixels();
        mask_scratch = std::max(mask_scratch, s.pixels() * channels);
      }
      if (bf16) gram_ops += Bf16Gram::buffer_bytes(engine, int(s.pixels()), s.channels);
    }
  }

  size_t total_bytes() const {
    size_t floats = 2 * moment + gram_scratch + temporal_image + temporal_weights + region_masks + mask_scratch +
                    content_masks,
           content = 0;
    for (size_t t : content_targets) content += t;
    for (size_t t : style_targets) floats += t;
    return sizeof(float) * floats + content_element_bytes * content + gram_ops;
  }
};

// Generated code, per oneDNN primitive (its JIT kernel and the primitive
// cache's entry, with what the OpenMP runtime adds for the threads that run
// them): what a session holds beyond its buffers. Measured at 130-160 KiB
// per primitive (AVX-512, 2 threads: a 16x16 session with the notebook's
// loss, whose buffers are small, grew the process by 11.6 MiB more than them,
// over about 90 primitives); allowed for with some room (256 KiB overestimated
// a 320x240 session by 15%, test/tiled-plan.test.ts).
constexpr size_t kGeneratedCodeBytes = size_t(192) << 10;

// The peak host bytes of a session of `c` with its targets (style images of
// `style_sizes`): the weights as given, the reordered copies its nets ask
// for, every primitive's generated code and the session's own buffers, all
// held throughout; then the larger of its two phases, which never overlap:
//  - setTargets: the content net, then the style nets (one per size, alive
//    together), with the glue's copy of the target images;
//  - iterate: the net it optimises, with the glue's copy of what a call
//    hands back (the images or their gradient). The net's buffers are
//    allocated when the session is created, but nothing writes them before
//    its first forward (oneDNN's memory is plain malloc, never cleared; large
//    blocks are mapped lazily): measured, creating a session at 640x480 grew
//    the process by its reordered weights and own buffers alone (73 MiB; the
//    net's are 859), its first iteration by 853 MiB. By then the target nets
//    are freed and their pages returned (release_freed_pages).
// Before 2026-12-07 the two phases were summed: +61% over the measured peak
// of an untiled render at 1024x768, +75% at 2048x1536 (bench/RESULTS.md).
static size_t session_peak_bytes(const dnnl::engine& engine, const SessionConfig& c,
                                 const std::vector<ImageSize>& style_sizes, const MaskShape& masks,
                                 Precision precision) {
  const VggNetPlan training = training_plan(engine, c, precision);
  std::vector<const VggNetPlan*> plans = {&training};
  std::optional<VggNetPlan> content;
  if (!c.loss.content.empty()) plans.push_back(&content.emplace(content_plan(engine, c, precision)));
  std::vector<ImageSize> distinct;
  for (const ImageSize& s : style_sizes)
    if (std::none_of(distinct.begin(), distinct.end(),
                     [&](const ImageSize& d) { return d.height == s.height && d.width == s.width; }))
      distinct.push_back(s);
  std::vector<VggNetPlan> styles;
  if (!c.loss.style.empty()) {
    styles.reserve(distinct.size());  // plans points into it
    for (const ImageSize& s : distinct) plans.push_back(&styles.emplace_back(style_plan(engine, c, s, precision)));
  }
  size_t style_nets = 0, style_gram_ops = 0, target_images = size_t(c.height) * c.width * 3, region_scratch = 0;
  int style_gram_primitives = 0;
  for (const VggNetPlan& p : styles) {
    style_nets += p.buffer_bytes();
    // With masks, a style's region is applied in an N x C scratch, one layer at a time.
    if (masks.regions > 0)
      for (const auto& l : c.loss.style)
        region_scratch = std::max(
            region_scratch, sizeof(float) * p.shape(l.conv_index).pixels() * size_t(p.shape(l.conv_index).channels));
    if (precision != Precision::Bf16) continue;
    // The style targets' Gram products, one layer at a time (bf16).
    for (const auto& l : c.loss.style) {
      const LayerShape& s = p.shape(l.conv_index);
      style_gram_ops = std::max(style_gram_ops, Bf16Gram::buffer_bytes(engine, int(s.pixels()), s.channels));
      style_gram_primitives += Bf16Gram::kPrimitives;
    }
  }
  for (const ImageSize& s : style_sizes) target_images += size_t(s.height) * s.width * 3;
  const ReorderedWeights reordered = reordered_weights(plans);
  const size_t weights = sizeof(float) * vgg_weight_floats(deepest_layer(c.loss) + 1) + reordered.bytes;
  const size_t target_nets =
      std::max(content ? content->buffer_bytes() : 0, style_nets + style_gram_ops + region_scratch);
  int primitives = reordered.copies + style_gram_primitives;
  for (const VggNetPlan* p : plans) primitives += p->primitive_count();
  if (precision == Precision::Bf16) primitives += Bf16Gram::kPrimitives * int(c.loss.style.size());
  const size_t targets_phase = target_nets + sizeof(float) * c.batch * target_images;
  const size_t iterate_phase = training.buffer_bytes() + sizeof(float) * c.batch * size_t(c.height) * c.width * 3;
  return weights + SessionBuffers(engine, c, training, masks).total_bytes() + kGeneratedCodeBytes * primitives +
         std::max(iterate_phase, targets_phase);
}

class CpuSession : public Session {
 public:
  CpuSession(const dnnl::engine& engine, std::shared_ptr<CpuWeights> weights, const SessionConfig& config,
             const VggNetPlan& plan, Precision precision)
      : engine_(engine),
        weights_(std::move(weights)),
        config_(config),
        precision_(precision),
        net_(engine_, *weights_, plan),
        image_size_(size_t(config.height) * config.width * 3),
        loss_sums_(size_t(config.batch) * kernels::kLossSlots, 0.0) {
    const SessionBuffers sizes(engine_, config, plan);
    m_.assign(sizes.moment, 0.f);
    v_.assign(sizes.moment, 0.f);
    for (size_t n : sizes.content_targets) content_targets_.emplace_back(n * sizes.content_element_bytes);
    for (size_t n : sizes.style_targets) style_targets_.emplace_back(n, 0.f);
    gram_scratch_.resize(sizes.gram_scratch);
    if (precision_ == Precision::Bf16)
      for (const auto& l : config.loss.style) {
        const LayerShape& s = plan.shape(l.conv_index);
        bf16_grams_.push_back(std::make_unique<Bf16Gram>(engine_, int(s.pixels()), s.channels));
      }
    temporal_image_.assign(sizes.temporal_image, 0.f);
    temporal_weights_.assign(sizes.temporal_weights, 0.f);
  }

  const SessionConfig& config() const override { return config_; }

  void set_targets(const std::vector<TargetsView>& targets) override {
    if (int(targets.size()) != config_.batch)
      throw Error("cpu: setTargets: got " + std::to_string(targets.size()) + " targets for a batch of " +
                  std::to_string(config_.batch));
    for (const auto& t : targets) {
      if (t.content.height != config_.height || t.content.width != config_.width)
        throw Error("cpu: setTargets: the content image must be the session's size");
      if (t.styles.empty()) throw Error("cpu: setTargets: each batch item needs at least one style image");
    }
    set_masks(targets);
    set_content_targets(targets);
    release_freed_pages();
    set_style_targets(targets);
    release_freed_pages();
    set_temporal_targets(targets);
    has_targets_ = true;
  }

  void set_images(const float* images) override {
    std::memcpy(net_.image(), images, m_.size() * sizeof(float));
    std::fill(m_.begin(), m_.end(), 0.f);
    std::fill(v_.begin(), v_.end(), 0.f);
    has_images_ = true;
  }

  // An evaluation without updates computes the gradient too (as the cuda
  // engine does): one backward pass at the end of a render, and one path.
  std::vector<LossValues> iterate(const AdamParams& adam, const std::function<void(int)>& progress) override {
    check_ready("iterate");
    std::vector<LossValues> first = evaluate();
    for (int k = 0; k < int(adam.step_sizes.size()); k++) {
      if (k > 0) evaluate();
      kernels::adam_cpu(net_.image(), m_.data(), v_.data(), net_.image_gradient(), m_.size(), adam.beta1, adam.beta2,
                        adam.eps, adam.step_sizes.data(), &k);
      progress(k + 1);
    }
    return first;
  }

  std::vector<LossValues> loss_and_gradient(float* gradient_out) override {
    check_ready("lossAndGradient");
    std::vector<LossValues> losses = evaluate();
    std::memcpy(gradient_out, net_.image_gradient(), m_.size() * sizeof(float));
    return losses;
  }

  void read_images(float* out) const override { std::memcpy(out, net_image(), m_.size() * sizeof(float)); }

  void read_optimizer_state(float* m_out, float* v_out) const override {
    std::memcpy(m_out, m_.data(), m_.size() * sizeof(float));
    std::memcpy(v_out, v_.data(), v_.size() * sizeof(float));
  }

  void write_optimizer_state(const float* m, const float* v) override {
    std::memcpy(m_.data(), m, m_.size() * sizeof(float));
    std::memcpy(v_.data(), v, v_.size() * sizeof(float));
  }

 private:
  const float* net_image() const { return const_cast<VggNet&>(net_).image(); }

  void check_ready(const char* op) const {
    if (!has_targets_) throw Error(std::string("cpu: ") + op + ": call setTargets first");
    if (!has_images_) throw Error(std::string("cpu: ") + op + ": call setImages first");
  }

  // Spatial control: where each item's style regions sit among the style
  // targets, their masks copied (the views are borrowed), and the content
  // masks. Without masks the buffers keep the unmasked session's layout.
  void set_masks(const std::vector<TargetsView>& targets) {
    const LossSpec& spec = config_.loss;
    bool any_content_mask = false, any_region = false;
    for (const auto& t : targets) {
      any_content_mask = any_content_mask || (!t.content_mask.empty() && !spec.content.empty());
      for (const auto& st : t.styles) any_region = any_region || !st.region.empty();
    }
    std::vector<size_t> positions;
    for (const auto& l : spec.style) positions.push_back(net_.shape(l.conv_index).pixels());
    RegionLayout layout = region_layout(targets, positions);
    if (precision_ == Precision::Bf16 && (layout.masked() || any_region || any_content_mask))
      throw Error(ErrorCode::Unsupported,
                  layout.masked() ? "styleMask"
                  : any_region    ? "styleRegion"
                                  : "contentMask",
                  "cpu: masks (spatial control) are not implemented in bf16: use precision fp32");
    regions_.clear();
    region_first_ = layout.first;
    region_masks_.assign(spec.style.size(), {});
    for (size_t l = 0; l < spec.style.size(); l++) {
      const LayerShape& s = net_.shape(spec.style[l].conv_index);
      style_targets_[l].assign(layout.slots.size() * s.channels * s.channels, 0.f);
      if (!layout.masked()) continue;
      region_masks_[l].assign(layout.slots.size() * s.pixels(), 0.f);
      mask_scratch_.resize(std::max(mask_scratch_.size(), s.pixels() * s.channels));
      for (size_t k = 0; k < layout.slots.size(); k++)
        if (!layout.slots[k].mask.empty())
          std::memcpy(region_masks_[l].data() + k * s.pixels(), layout.slots[k].mask[l], s.pixels() * sizeof(float));
    }
    for (const RegionSlot& slot : layout.slots) regions_.push_back({!slot.mask.empty(), slot.mass});
    content_masks_.assign(any_content_mask ? spec.content.size() : 0, {});
    for (size_t k = 0; k < content_masks_.size(); k++) {
      const size_t n = net_.shape(spec.content[k].conv_index).pixels();
      content_masks_[k].assign(size_t(config_.batch) * n, 1.f);  // an item without a mask: weight 1
      for (int b = 0; b < config_.batch; b++)
        if (!targets[b].content_mask.empty())
          std::memcpy(content_masks_[k].data() + b * n, targets[b].content_mask[k], n * sizeof(float));
    }
  }

  // Content targets: the content images' activations, batched in one forward.
  void set_content_targets(const std::vector<TargetsView>& targets) {
    if (config_.loss.content.empty()) return;
    VggNet net(engine_, *weights_, content_plan(engine_, config_, precision_));
    for (int b = 0; b < config_.batch; b++)
      std::memcpy(net.image() + b * image_size_, targets[b].content.data, image_size_ * sizeof(float));
    net.forward([&](int l) {
      const int i = entry_at_layer(config_.loss.content, l);
      if (i < 0) return;
      const void* activation = net.bf16() ? static_cast<const void*>(net.activation_bf16(l)) : net.activation(l);
      std::memcpy(content_targets_[i].data(), activation, content_targets_[i].size());
    });
  }

  // Style targets: per region sum_k weight_k * Ghat(style_k) per layer (the
  // guided Gram under the style's region where it has one), one net per style size.
  void set_style_targets(const std::vector<TargetsView>& targets) {
    if (config_.loss.style.empty()) return;
    std::map<std::pair<int, int>, std::unique_ptr<VggNet>> nets;
    std::vector<float> region_scratch;
    for (int b = 0; b < config_.batch; b++) {
      for (const auto& style : targets[b].styles) {
        const ImageView& img = style.image;
        auto& net = nets[{img.height, img.width}];
        if (!net)
          net = std::make_unique<VggNet>(engine_, *weights_,
                                         style_plan(engine_, config_, {img.height, img.width}, precision_));
        std::memcpy(net->image(), img.data, size_t(img.height) * img.width * 3 * sizeof(float));
        net->forward([&](int l) {
          const int i = entry_at_layer(config_.loss.style, l);
          if (i < 0) return;
          const LayerShape& s = net->shape(l);
          const size_t slot = size_t(region_first_[b]) + size_t(style.mask_index);
          float* target = style_targets_[i].data() + slot * s.channels * s.channels;
          if (!style.region.empty()) {
            region_scratch.resize(std::max(region_scratch.size(), s.pixels() * s.channels));
            kernels::mask_rows_cpu(region_scratch.data(), net->activation(l), style.region[i], s.pixels(), s.channels);
            gram(region_scratch.data(), int(s.pixels()), s.channels, float(style.weight / region_mass(style, i, l)),
                 1.f, target);
            return;
          }
          const float scale = style.weight / float(s.pixels());
          if (net->bf16())
            Bf16Gram(engine_, int(s.pixels()), s.channels).gram(net->activation_bf16(l), scale, 1.f, target);
          else
            gram(net->activation(l), int(s.pixels()), s.channels, scale, 1.f, target);
        });
      }
    }
  }

  // Temporal targets (video): each item's warped previous frame and pixel
  // weights; an item without one gets weight 0 everywhere (no term).
  void set_temporal_targets(const std::vector<TargetsView>& targets) {
    if (temporal_image_.empty()) return;
    const size_t pixels = size_t(config_.height) * config_.width;
    for (int b = 0; b < config_.batch; b++) {
      float* image = temporal_image_.data() + b * pixels * 3;
      float* weights = temporal_weights_.data() + b * pixels;
      if (const auto& t = targets[b].temporal) {
        std::memcpy(image, t->image, pixels * 3 * sizeof(float));
        std::memcpy(weights, t->weights, pixels * sizeof(float));
      } else {
        std::fill(image, image + pixels * 3, 0.f);
        std::fill(weights, weights + pixels, 0.f);
      }
    }
  }

  // Forward, then backward into net_.image_gradient() with every loss term
  // added on the way (see NST-SPEC.md), TV last; the losses of each item.
  std::vector<LossValues> evaluate() {
    std::fill(loss_sums_.begin(), loss_sums_.end(), 0.0);
    net_.forward();
    net_.backward(
        [this](int layer, float* grad, kernels::bf16_bits* conv_grad) { layer_backward(layer, grad, conv_grad); });
    const LossSpec& spec = config_.loss;
    kernels::tv_loss_grad_cpu(net_.image(), net_.image_gradient(), config_.batch, config_.height, config_.width,
                              spec.tv_weight, loss_sums_.data());
    if (!temporal_image_.empty())
      kernels::temporal_loss_grad_cpu(net_.image(), temporal_image_.data(), temporal_weights_.data(),
                                      net_.image_gradient(), config_.batch, config_.height, config_.width,
                                      spec.temporal_weight, loss_sums_.data());
    std::vector<LossValues> losses(config_.batch);
    for (int b = 0; b < config_.batch; b++) {
      LossValues& v = losses[b];
      v.content = loss_sums_[b * kernels::kLossSlots + kernels::kContentSlot];
      v.style = loss_sums_[b * kernels::kLossSlots + kernels::kStyleSlot];
      v.tv = loss_sums_[b * kernels::kLossSlots + kernels::kTvSlot];
      v.temporal = loss_sums_[b * kernels::kLossSlots + kernels::kTemporalSlot];
      v.total =
          spec.alpha * v.content + spec.beta * v.style + spec.tv_weight * v.tv + spec.temporal_weight * v.temporal;
    }
    return losses;
  }

  // One loss layer of the backward pass, every batch item: `grad` holds d J / d
  // (the layer's post-ReLU output) from the layers above. Adds the layer's
  // style terms, then goes back through the ReLU with the content term fused:
  // in place (fp32), or into `conv_grad` in bf16 (VggNet::backward).
  void layer_backward(int layer, float* grad, kernels::bf16_bits* conv_grad) {
    const LayerShape& s = net_.shape(layer);
    const size_t n = s.pixels(), c = s.channels, item = n * c;
    const LossSpec& spec = config_.loss;
    const bool bf16 = net_.bf16();
    const float* act = bf16 ? nullptr : net_.activation(layer);
    const kernels::bf16_bits* act16 = bf16 ? net_.activation_bf16(layer) : nullptr;
    if (const int i = entry_at_layer(spec.style, layer); i >= 0) {
      const double w = spec.style[i].weight;
      for (int b = 0; b < config_.batch; b++)
        for (int slot = region_first_[b]; slot < region_first_[b + 1]; slot++) {
          const float* target = style_targets_[i].data() + slot * c * c;
          double* loss = loss_sums_.data() + size_t(b) * kernels::kLossSlots;
          if (regions_[slot].masked) {
            masked_style_term(i, act + b * item, region_masks_[i].data() + slot * n, regions_[slot].mass[i], n, c,
                              target, loss, grad + b * item);
            continue;
          }
          if (bf16)
            bf16_grams_[i]->gram(act16 + b * item, 1.f / float(n), 0.f, gram_scratch_.data());
          else
            gram(act + b * item, int(n), int(c), 1.f / float(n), 0.f, gram_scratch_.data());
          kernels::style_gram_diff_cpu(gram_scratch_.data(), target, int(c), 1, float(w / (4.0 * c * c)),
                                       float(spec.beta * w / (double(c) * c * n)), loss);
          if (bf16)
            bf16_grams_[i]->add_gradient(act16 + b * item, gram_scratch_.data(), grad + b * item);
          else
            add_gram_gradient(act + b * item, int(n), int(c), gram_scratch_.data(), grad + b * item);
        }
    }
    const int k = entry_at_layer(spec.content, layer);
    const void* content_target = k >= 0 ? content_targets_[k].data() : nullptr;
    const double content_weight = k >= 0 ? spec.content[k].weight : 0.0;
    const float grad_coef = float(spec.alpha * content_weight / (2.0 * n * c));
    const float loss_coef = float(content_weight / (4.0 * n * c));
    if (bf16) {
      kernels::relu_backward_bf16_cpu(grad, act16, static_cast<const kernels::bf16_bits*>(content_target), grad_coef,
                                      loss_coef, loss_sums_.data(), conv_grad, item, config_.batch);
    } else if (k >= 0 && !content_masks_.empty()) {
      // The content term weighted per position, then the ReLU's backward alone.
      kernels::masked_content_cpu(grad, act, static_cast<const float*>(content_target), content_masks_[k].data(), n,
                                  int(c), config_.batch, grad_coef, loss_coef, loss_sums_.data());
      kernels::relu_backward_cpu(grad, act, nullptr, 0.f, 0.f, loss_sums_.data(), item, config_.batch);
    } else {
      kernels::relu_backward_cpu(grad, act, static_cast<const float*>(content_target), grad_coef, loss_coef,
                                 loss_sums_.data(), item, config_.batch);
    }
  }

  // A masked region's style term at style layer i of one item (activation
  // `act`, n x c; mask m of mass `mass`): B = A o m, Ghat = B^T B / mass, the
  // Gram difference with the region's target, then grad += (B o m) D, the
  // coefficient beta w / (C^2 mass) in D. A mask without mass adds nothing.
  void masked_style_term(int i, const float* act, const float* m, double mass, size_t n, size_t c, const float* target,
                         double* loss, float* grad) {
    if (!(mass > 0)) return;
    const double w = config_.loss.style[i].weight;
    float* b = mask_scratch_.data();
    kernels::mask_rows_cpu(b, act, m, n, int(c));
    gram(b, int(n), int(c), float(1.0 / mass), 0.f, gram_scratch_.data());
    kernels::style_gram_diff_cpu(gram_scratch_.data(), target, int(c), 1, float(w / (4.0 * c * c)),
                                 float(config_.loss.beta * w / (double(c) * c * mass)), loss);
    kernels::mask_rows_cpu(b, b, m, n, int(c));
    add_gram_gradient(b, int(n), int(c), gram_scratch_.data(), grad);
  }

  dnnl::engine engine_;
  std::shared_ptr<CpuWeights> weights_;
  SessionConfig config_;
  Precision precision_;
  VggNet net_;
  size_t image_size_;
  std::vector<float> m_, v_;
  // The content layers' maps, as the net stores its activations (float32 or bf16).
  std::vector<std::vector<std::byte>> content_targets_;
  std::vector<std::vector<float>> style_targets_;
  std::vector<float> gram_scratch_;
  std::vector<std::unique_ptr<Bf16Gram>> bf16_grams_;     // bf16: each style layer's Gram products
  std::vector<float> temporal_image_, temporal_weights_;  // empty without a temporal weight
  // Spatial control (set_masks): each region slot (item b's are
  // region_first_[b] up to region_first_[b + 1]; without masks slot b is
  // item b), each style layer's region masks (slots x N; empty unmasked), the
  // N x C scratch of A o m, and each content layer's mask (batch x N; empty: none).
  struct Region {
    bool masked;
    std::vector<double> mass;  // per style layer
  };
  std::vector<Region> regions_;
  std::vector<int> region_first_;
  std::vector<std::vector<float>> region_masks_, content_masks_;
  std::vector<float> mask_scratch_;
  std::vector<double> loss_sums_;  // batch x kernels::kLossSlots, as the loss kernels accumulate them
  bool has_targets_ = false, has_images_ = false;
};

// The precision an engine is asked for, checked against the processor: bf16
// without native bf16 instructions is refused in one line naming them.
static Precision checked_precision(Precision precision, const CpuFeatures& features) {
  if (precision == Precision::Tf32)
    throw Error(ErrorCode::Unsupported, "precision", "cpu: precision 'tf32' is not implemented by the cpu engine");
  if (precision == Precision::Bf16 && !features.native_bf16())
    throw Error(ErrorCode::Unsupported, "precision", bf16_missing_reason(features));
  return precision;
}

class CpuEngine : public Engine {
 public:
  explicit CpuEngine(const CpuOptions& options)
      : engine_(dnnl::engine::kind::cpu, 0),
        features_(cpu_features()),
        precision_(checked_precision(options.precision, features_)) {
    // What runs, named from the implementation oneDNN picks for a typical layer.
    try {
      const VggNetPlan probe(engine_, 1, 32, 32, 1, Pooling::Avg, false, {}, precision_);
      isa_ = isa_display_name(probe.convolution_implementation());
    } catch (const dnnl::error&) {
      // Only with forced features: oneDNN 2.6 has bf16 convolutions from AVX-512 on (emulated there).
      if (precision_ != Precision::Bf16) throw;
      throw Error(ErrorCode::Unsupported, "precision",
                  "cpu: bf16: oneDNN " + onednn_version() + " has no bf16 convolution for this processor (" +
                      features_.isa + "; NST_CPU_FEATURES=" + features_.forced_as() + " claims native bf16)");
    }
  }

  // "cpu (oneDNN 2.6.3, 2 threads, AVX512-BF16 bf16)": the instruction set of
  // the convolutions and the precision.
  std::string describe() const override {
    return "cpu (oneDNN " + onednn_version() + ", " + std::to_string(omp_get_max_threads()) + " threads, " + isa_ +
           (precision_ == Precision::Bf16 ? " bf16" : " fp32") +
           (features_.forced ? "; NST_CPU_FEATURES=" + features_.forced_as() : "") + ")";
  }

  void set_weights(const std::vector<ConvWeightsView>& layers) override {
    if (layers.empty() || layers.size() > 16) throw Error("cpu: setWeights: expected 1 to 16 conv layers");
    for (size_t i = 0; i < layers.size(); i++)
      if (layers[i].in_channels != kVgg19[i].in_channels || layers[i].out_channels != kVgg19[i].out_channels)
        throw Error(std::string("cpu: setWeights: ") + kVgg19[i].name + " has the wrong number of channels");
    weights_ = std::make_shared<CpuWeights>(engine_, layers);
  }

  std::unique_ptr<Session> create_session(const SessionConfig& config) override {
    if (!weights_) throw Error("cpu: createSession: call setWeights first");
    // The config passed validate_session_config (the addon calls it).
    return std::make_unique<CpuSession>(engine_, weights_, config, training_plan(engine_, config, precision_),
                                        precision_);
  }

  double estimate_memory(const SessionConfig& config, const std::vector<ImageSize>& style_sizes,
                         const MaskShape& masks) const override {
    return double(session_peak_bytes(engine_, config, style_sizes, masks, precision_));
  }

  // Exact tiling: tile_session.cc.
  std::unique_ptr<TileSession> create_tile_session(const TileSessionConfig& config) override {
    if (!weights_) throw Error("cpu: createTileSession: call setWeights first");
    return make_tile_session(engine_, weights_, config);
  }

  TileMemory estimate_tile_memory(const TileSessionConfig& config,
                                  const std::vector<ImageSize>& tile_shapes) const override {
    return tile_memory(engine_, config, tile_shapes);
  }

 private:
  dnnl::engine engine_;
  CpuFeatures features_;
  Precision precision_;
  std::string isa_;
  std::shared_ptr<CpuWeights> weights_;
};

}  // namespace cpu

std::unique_ptr<Engine> make_cpu_engine(const CpuOptions& options) { return std::make_unique<cpu::CpuEngine>(options); }

Precision cpu_auto_precision() { return Precision::Fp32; }

}  // namespace nst
