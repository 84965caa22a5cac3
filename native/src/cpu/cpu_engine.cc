// The CPU engine: VGG-19 on oneDNN plus the fused loss kernels, one whole
// iteration (forward, losses, backward, Adam) per loop turn in C++.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "../engine.h"
#include "../session_config.h"
#include "gram.h"
#include "kernels/adam.cuh"
#include "kernels/relu_backward.cuh"
#include "kernels/style_gram_diff.cuh"
#include "kernels/tv_loss.cuh"
#include "vgg_net.h"

namespace nst {
namespace cpu {

static std::string onednn_version() {
  const dnnl_version_t* v = ::dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

// The layers whose activations the Gram kernels read as N x C matrices.
static std::vector<bool> style_layers(const LossSpec& loss) {
  std::vector<bool> style(std::size(kVgg19), false);
  for (const auto& l : loss.style) style[l.conv_index] = true;
  return style;
}

class CpuSession : public Session {
 public:
  CpuSession(const dnnl::engine& engine, std::shared_ptr<CpuWeights> weights, const SessionConfig& config)
      : engine_(engine),
        weights_(std::move(weights)),
        config_(config),
        nhwc_layers_(style_layers(config.loss)),
        net_(engine_, *weights_, config.batch, config.height, config.width, deepest_layer(config.loss), config.pooling,
             true, nhwc_layers_),
        image_size_(size_t(config.height) * config.width * 3),
        m_(image_size_ * config.batch, 0.f),
        v_(image_size_ * config.batch, 0.f),
        loss_sums_(size_t(config.batch) * kernels::kLossSlots, 0.0) {
    for (const auto& l : config_.loss.content) {
      const LayerShape& s = net_.shape(l.conv_index);
      content_targets_.emplace_back(size_t(config.batch) * s.pixels() * s.channels, 0.f);
    }
    size_t largest_gram = 0;
    for (const auto& l : config_.loss.style) {
      const int c = net_.shape(l.conv_index).channels;
      style_targets_.emplace_back(size_t(config.batch) * c * c, 0.f);
      largest_gram = std::max(largest_gram, size_t(c) * c);
    }
    gram_scratch_.resize(largest_gram);
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
    set_content_targets(targets);
    set_style_targets(targets);
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

  // Content targets: the content images' activations, batched in one forward.
  void set_content_targets(const std::vector<TargetsView>& targets) {
    if (config_.loss.content.empty()) return;
    const int deepest = deepest_layer(config_.loss.content);
    // Same layer layouts as net_ (nhwc_layers_): the content kernel compares activations element by element.
    VggNet net(engine_, *weights_, config_.batch, config_.height, config_.width, deepest, config_.pooling, false,
               nhwc_layers_);
    for (int b = 0; b < config_.batch; b++)
      std::memcpy(net.image() + b * image_size_, targets[b].content.data, image_size_ * sizeof(float));
    net.forward();
    for (size_t i = 0; i < config_.loss.content.size(); i++) {
      const int l = config_.loss.content[i].conv_index;
      std::memcpy(content_targets_[i].data(), net.activation(l), content_targets_[i].size() * sizeof(float));
    }
  }

  // Style targets: sum_k weight_k * Ghat(style_k) per layer, one net per style size.
  void set_style_targets(const std::vector<TargetsView>& targets) {
    if (config_.loss.style.empty()) return;
    const int deepest = deepest_layer(config_.loss.style);
    std::map<std::pair<int, int>, std::unique_ptr<VggNet>> nets;
    for (auto& t : style_targets_) std::fill(t.begin(), t.end(), 0.f);
    for (int b = 0; b < config_.batch; b++) {
      for (const auto& style : targets[b].styles) {
        const ImageView& img = style.image;
        auto& net = nets[{img.height, img.width}];
        if (!net)
          net = std::make_unique<VggNet>(engine_, *weights_, 1, img.height, img.width, deepest, config_.pooling, false,
                                         nhwc_layers_);
        std::memcpy(net->image(), img.data, size_t(img.height) * img.width * 3 * sizeof(float));
        net->forward();
        for (size_t i = 0; i < config_.loss.style.size(); i++) {
          const LayerShape& s = net->shape(config_.loss.style[i].conv_index);
          float* target = style_targets_[i].data() + size_t(b) * s.channels * s.channels;
          gram(net->activation(config_.loss.style[i].conv_index), int(s.pixels()), s.channels,
               style.weight / float(s.pixels()), 1.f, target);
        }
      }
    }
  }

  // Forward, then backward into net_.image_gradient() with every loss term
  // added on the way (see NST-SPEC.md), TV last; the losses of each item.
  std::vector<LossValues> evaluate() {
    std::fill(loss_sums_.begin(), loss_sums_.end(), 0.0);
    net_.forward();
    net_.backward([this](int layer, float* grad) { layer_backward(layer, grad); });
    const LossSpec& spec = config_.loss;
    kernels::tv_loss_grad_cpu(net_.image(), net_.image_gradient(), config_.batch, config_.height, config_.width,
                              spec.tv_weight, loss_sums_.data());
    std::vector<LossValues> losses(config_.batch);
    for (int b = 0; b < config_.batch; b++) {
      LossValues& v = losses[b];
      v.content = loss_sums_[b * kernels::kLossSlots + kernels::kContentSlot];
      v.style = loss_sums_[b * kernels::kLossSlots + kernels::kStyleSlot];
      v.tv = loss_sums_[b * kernels::kLossSlots + kernels::kTvSlot];
      v.total = spec.alpha * v.content + spec.beta * v.style + spec.tv_weight * v.tv;
    }
    return losses;
  }

  // One layer of the backward pass, every batch item: `grad` holds d J / d
  // (the layer's post-ReLU output) from the layers above. Adds the layer's
  // style terms, then goes back through the ReLU with the content term fused.
  void layer_backward(int layer, float* grad) {
    const LayerShape& s = net_.shape(layer);
    const size_t n = s.pixels(), c = s.channels, item = n * c;
    const LossSpec& spec = config_.loss;
    const float* act = net_.activation(layer);
    for (size_t i = 0; i < spec.style.size(); i++) {
      if (spec.style[i].conv_index != layer) continue;
      const double w = spec.style[i].weight;
      for (int b = 0; b < config_.batch; b++) {
        gram(act + b * item, int(n), int(c), 1.f / float(n), 0.f, gram_scratch_.data());
        kernels::style_gram_diff_cpu(gram_scratch_.data(), style_targets_[i].data() + b * c * c, int(c), 1,
                                     float(w / (4.0 * c * c)), float(spec.beta * w / (double(c) * c * n)),
                                     loss_sums_.data() + size_t(b) * kernels::kLossSlots);
        add_gram_gradient(act + b * item, int(n), int(c), gram_scratch_.data(), grad + b * item);
      }
    }
    const float* content_target = nullptr;
    double content_weight = 0;
    for (size_t i = 0; i < spec.content.size(); i++) {
      if (spec.content[i].conv_index != layer) continue;
      content_target = content_targets_[i].data();
      content_weight = spec.content[i].weight;
    }
    kernels::relu_backward_cpu(grad, act, content_target, float(spec.alpha * content_weight / (2.0 * n * c)),
                               float(content_weight / (4.0 * n * c)), loss_sums_.data(), item, config_.batch);
  }

  dnnl::engine engine_;
  std::shared_ptr<CpuWeights> weights_;
  SessionConfig config_;
  std::vector<bool> nhwc_layers_;
  VggNet net_;
  size_t image_size_;
  std::vector<float> m_, v_;
  std::vector<std::vector<float>> content_targets_, style_targets_;
  std::vector<float> gram_scratch_;
  std::vector<double> loss_sums_;  // batch x kernels::kLossSlots, as the loss kernels accumulate them
  bool has_targets_ = false, has_images_ = false;
};

class CpuEngine : public Engine {
 public:
  CpuEngine() : engine_(dnnl::engine::kind::cpu, 0) {}

  std::string describe() const override {
    return "cpu (oneDNN " + onednn_version() + ", " + std::to_string(omp_get_max_threads()) + " threads)";
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
    return std::make_unique<CpuSession>(engine_, weights_, config);
  }

 private:
  dnnl::engine engine_;
  std::shared_ptr<CpuWeights> weights_;
};

}  // namespace cpu

std::unique_ptr<Engine> make_cpu_engine() { return std::make_unique<cpu::CpuEngine>(); }

}  // namespace nst
