#include "vgg_net.h"

#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim
#endif

#include "conv_strips.h"
#include "relu_mask.h"

namespace nst::cpu {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

// NHWC is the layout JavaScript hands over, the one the Gram kernels read as
// an N x C matrix, and one oneDNN 2.6's brgemm convolutions run at full speed
// on (bench/RESULTS.md has the numbers). Winograd layers run on the blocked
// nChw16c layout instead (see winograd_rule), converted at their edges.
static memory::desc nhwc(int n, int c, int h, int w, dt type = dt::f32) { return {{n, c, h, w}, type, tag::nhwc}; }

// The same layout with float32 elements (gradients are float32 in every precision).
static memory::desc as_f32(memory::desc d) {
  d.data.data_type = dnnl_f32;
  return d;
}

static dt activation_type(Precision precision) { return precision == Precision::Bf16 ? dt::bf16 : dt::f32; }

static void copy_into(const memory& m, const float* src, size_t count) {
  std::memcpy(m.get_data_handle(), src, count * sizeof(float));
}

memory::desc CpuWeights::given_format(int layer) {
  return {{kVgg19[layer].out_channels, kVgg19[layer].in_channels, 3, 3}, dt::f32, tag::hwio};
}

CpuWeights::CpuWeights(const dnnl::engine& engine, const std::vector<ConvWeightsView>& layers) : engine_(engine) {
  for (size_t i = 0; i < layers.size(); i++) {
    const ConvWeightsView& l = layers[i];
    memory kernel(given_format(int(i)), engine_);
    copy_into(kernel, l.kernel, size_t(9) * l.in_channels * l.out_channels);
    memory bias({{l.out_channels}, dt::f32, tag::x}, engine_);
    copy_into(bias, l.bias, size_t(l.out_channels));
    kernels_.push_back(kernel);
    biases_.push_back(bias);
  }
}

ReorderedWeights reordered_weights(const std::vector<const VggNetPlan*>& plans) {
  std::vector<std::pair<int, memory::desc>> copies;  // as CpuWeights::kernel caches them
  ReorderedWeights reordered;
  for (const VggNetPlan* plan : plans) {
    for (const auto& [layer, format] : plan->weight_formats()) {
      if (format == CpuWeights::given_format(layer)) continue;
      bool seen = false;
      for (const auto& [l, f] : copies) seen = seen || (l == layer && f == format);
      if (seen) continue;
      copies.emplace_back(layer, format);
      reordered.bytes += format.get_size();
      reordered.copies++;
    }
  }
  return reordered;
}

memory CpuWeights::kernel(int layer, const memory::desc& format) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (kernels_[layer].get_desc() == format) return kernels_[layer];
  for (const auto& r : cache_)
    if (r.layer == layer && r.memory.get_desc() == format) return r.memory;
  memory reordered(format, engine_);
  dnnl::stream s(engine_);
  dnnl::reorder(kernels_[layer], reordered).execute(s, kernels_[layer], reordered);
  s.wait();
  cache_.push_back({layer, reordered});
  return reordered;
}

void release_freed_pages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

static dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

bool winograd_enabled() {
  const char* env = std::getenv("NST_CPU_WINOGRAD");
  return !(env && std::strcmp(env, "0") == 0);
}

// Winograd where it is faster (bench/cpu/winograd.cc, bench/RESULTS.md):
// about 2x faster than the direct kernels forward and backward-data on maps of
// 32x32 pixels and more (on conv1_2 at full resolution it still wins after the
// layout conversions of its 64-channel input), even at 19x25, but slower on
// small maps (1.5x at 16x16, 4x at 8x8): too few 4x4 tiles to amortise the
// transforms. conv1_1's 3 input channels have no Winograd kernel.
// None in bf16: oneDNN's Winograd is float32 only, so a Winograd layer in a
// bf16 net would convert its input and output from and to bf16. Measured per
// layer (bench/cpu/bf16-layers.cc, bench/RESULTS.md) on AVX512-BF16 without
// AMX at 400x300: bf16 direct beats fp32 Winograd on every layer once those
// conversions are counted (before them it ties on conv4_2), 271 / 274 ms
// forward / backward-data for the 13 layers against 448 / 455 ms for the
// fp32 engine's; on AMX, bf16 direct runs at 4-6x fp32 direct (issue 24),
// which Winograd's 2x cannot reach.
static bool winograd_rule(int layer, int batch, int h, int w, Precision precision) {
  constexpr long kMinPixels = 400;  // between 16x16 (slower) and 19x25 (faster)
  return precision == Precision::Fp32 && kVgg19[layer].in_channels % 16 == 0 && long(batch) * h * w >= kMinPixels;
}

// A conv's attributes: bias and ReLU fused, a user scratchpad.
static dnnl::primitive_attr conv_attr() {
  dnnl::post_ops relu;
  relu.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  auto attr = user_scratchpad();
  attr.set_post_ops(relu);
  return attr;
}

// A conv with bias and ReLU; `type` is that of its input, weights and output
// (the bias stays float32, and so does the accumulation). Every net, the
// target nets included, is created for training: oneDNN's Winograd for
// inference keeps its weights transformed (4x their size, a copy per layer
// that CpuWeights would hold beside the training net's: 200 MiB for the
// notebook's loss), where for training it transforms them per call.
static dnnl::convolution_forward::primitive_desc conv_forward_pd(const dnnl::engine& engine, dnnl::algorithm alg,
                                                                 tag layout, int batch, int ic, int oc, int h, int w,
                                                                 const memory::desc& bias, dt type = dt::f32) {
  const memory::dims one{1, 1};
  memory::desc any_kernel({oc, ic, 3, 3}, type, tag::any);
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, alg, {{batch, ic, h, w}, type, layout},
                                       any_kernel, bias, {{batch, oc, h, w}, type, layout}, one, one, one);
  return {desc, conv_attr(), engine};
}

// Winograd for this layer if the rule wants it and oneDNN has it.
// (rule_h, rule_w: the map size the rule decides by.)
static bool use_winograd(const dnnl::engine& engine, int layer, int batch, int h, int w, int rule_h, int rule_w,
                         const memory::desc& bias, Precision precision) {
  if (!winograd_enabled() || !winograd_rule(layer, batch, rule_h, rule_w, precision)) return false;
  const int ic = kVgg19[layer].in_channels, oc = kVgg19[layer].out_channels;
  try {
    conv_forward_pd(engine, dnnl::algorithm::convolution_winograd, tag::nChw16c, batch, ic, oc, h, w, bias);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

VggNet::Convert VggNet::convert(const memory& from, const memory& to) {
  if (from.get_desc() == to.get_desc()) return {};
  return {Step{dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}}};
}

static memory::desc bias_format(int layer) { return {{kVgg19[layer].out_channels}, dt::f32, tag::x}; }

VggNetPlan::VggNetPlan(const dnnl::engine& engine, int batch, int height, int width, int last_layer, Pooling pooling,
                       bool with_backward, const LayerReads& reads, Precision precision, ImageSize rule_size)
    : batch_(batch), height_(height), width_(width), with_backward_(with_backward), precision_(precision) {
  const auto pool_alg =
      pooling == Pooling::Avg ? dnnl::algorithm::pooling_avg_exclude_padding : dnnl::algorithm::pooling_max;
  const auto prop = dnnl::prop_kind::forward_training;  // every net's (conv_forward_pd says why)
  const dt act = activation_type(precision);
  const bool bf16 = precision == Precision::Bf16;
  const memory::dims one{1, 1}, two{2, 2}, zero{0, 0};
  auto use_scratchpad = [&](const memory::desc& d) { scratchpad_bytes_ = std::max(scratchpad_bytes_, d.get_size()); };
  largest_activation_ = size_t(batch) * height * width * kVgg19[0].out_channels;
  layers_.resize(last_layer + 1);

  auto read = [](const std::vector<bool>& v, int l) { return l < int(v.size()) && v[l]; };
  // The forward's steps (a conversion, a conv, a pool) each write what is
  // not kept to the turn buffer their input is not in: only the step's input
  // is alive there (what the layers above read is kept or converted from it).
  int live = -1;  // the turn buffer holding the next step's input (-1: its own buffer)
  auto write_turn = [&](const memory::desc& map) {
    live = live == 0 ? 1 : 0;
    turn_bytes_[live] = std::max(turn_bytes_[live], map.get_size());
    return live;
  };
  int h = height, w = width;
  int rule_h = rule_size.height > 0 ? rule_size.height : height, rule_w = rule_size.width > 0 ? rule_size.width : width;
  memory::desc input = nhwc(batch, 3, height, width);  // the image: float32 in every precision
  for (int l = 0; l <= last_layer; l++) {
    const int ic = kVgg19[l].in_channels, oc = kVgg19[l].out_channels;
    LayerPlan& layer = layers_[l];
    layer.shape = {h, w, oc};
    largest_activation_ = std::max(largest_activation_, size_t(batch) * h * w * oc);
    layer.winograd = use_winograd(engine, l, batch, h, w, rule_h, rule_w, bias_format(l), precision);
    const tag conv_layout = layer.winograd ? tag::nChw16c : tag::nhwc;
    const bool nhwc_output = !layer.winograd || read(reads.nhwc, l);
    layer.conv = conv_forward_pd(
        engine, layer.winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct,
        conv_layout, batch, ic, oc, h, w, bias_format(l), act);
    layer.input = input;
    layer.output = nhwc_output ? nhwc(batch, oc, h, w, act) : layer.conv.dst_desc();
    layer.grad_output = as_f32(layer.output);
    layer.grad_input = as_f32(input);
    layer.kept = read(reads.kept, l);
    // conv1_1 recomputed: direct NHWC from the float32 image, its gradient in that layout (nothing converted).
    layer.recomputed = l == 0 && reads.recompute_first && with_backward && !layer.kept && !layer.winograd &&
                       layer.input == layer.conv.src_desc() && layer.output == layer.conv.dst_desc();
    // Else (bf16: the image is converted first) a first layer the backward reads is kept.
    if (l == 0 && reads.recompute_first && !layer.recomputed) layer.kept = true;
    if (layer.input != layer.conv.src_desc()) layer.src_slot = write_turn(layer.conv.src_desc());
    if (layer.output != layer.conv.dst_desc() || !layer.kept) layer.dst_slot = write_turn(layer.conv.dst_desc());
    if (layer.kept) {
      live = -1;
    } else {
      // The conv's dst is the output, or is converted into it in the other buffer.
      layer.output_slot = layer.output == layer.conv.dst_desc() ? layer.dst_slot : write_turn(layer.output);
      if (with_backward && !layer.recomputed) relu_mask_words_ += relu_mask_words(size_t(batch) * h * w * oc);
    }
    input = layer.output;

    if (kVgg19[l].pool_after && l < last_layer) {
      // TF SAME for 2x2/2: odd sizes get one padded row/column at the bottom/right.
      const int ho = (h + 1) / 2, wo = (w + 1) / 2;
      const tag out_layout = nhwc_output ? tag::nhwc : conv_layout;
      dnnl::pooling_forward::desc pool_desc(prop, pool_alg, {{batch, oc, h, w}, act, out_layout},
                                            {{batch, oc, ho, wo}, act, out_layout}, two, two, zero, {h % 2, w % 2});
      layer.has_pool = true;
      layer.pool = dnnl::pooling_forward::primitive_desc(pool_desc, user_scratchpad(), engine);
      use_scratchpad(layer.pool.scratchpad_desc());
      if (with_backward) {
        // Gradients are float32: so is the pooling's backward (in bf16 too;
        // the forward's workspace, max pooling's indices, has no type to agree on).
        dnnl::pooling_backward::desc backward_desc(pool_alg, as_f32(layer.pool.src_desc()),
                                                   as_f32(layer.pool.dst_desc()), two, two, zero, {h % 2, w % 2});
        layer.pool_backward =
            dnnl::pooling_backward::primitive_desc(backward_desc, user_scratchpad(), engine, layer.pool);
        use_scratchpad(layer.pool_backward.scratchpad_desc());
      }
      input = layer.pool.dst_desc();
      layer.pool_slot = write_turn(input);
      h = ho;
      w = wo;
      rule_h = (rule_h + 1) / 2;
      rule_w = (rule_w + 1) / 2;
    }

    if (with_backward) {
      // Its diff_src (d J / d input) is float32; its weights and diff_dst are
      // the forward's type: in bf16 the ReLU backward writes diff_dst in bf16.
      memory::desc any_kernel({oc, ic, 3, 3}, act, tag::any);
      dnnl::convolution_backward_data::desc backward_desc(
          layer.winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct,
          as_f32(layer.conv.src_desc()), any_kernel, layer.conv.dst_desc(), one, one, one);
      layer.conv_backward =
          dnnl::convolution_backward_data::primitive_desc(backward_desc, user_scratchpad(), engine, layer.conv);
      // The ReLU backward writes diff_dst element for element in the activation's layout.
      if (bf16 && layer.conv_backward.diff_dst_desc() != layer.output)
        throw Error(std::string("cpu: bf16: ") + kVgg19[l].name +
                    "'s backward-data wants its gradient in another layout than its activation's");
      // The backward's conversions go through the gradient's ping-pong buffers
      // (VggNet's constructor), each as large as the largest activation in float32.
    }

    // A Winograd conv whose scratchpad is large runs in strips (conv_strips.h).
    size_t conv_scratchpad = layer.conv.scratchpad_desc().get_size();
    if (with_backward) conv_scratchpad = std::max(conv_scratchpad, layer.conv_backward.scratchpad_desc().get_size());
    if (layer.winograd)
      layer.strips = plan_strips(engine, layer.conv, conv_scratchpad, with_backward, conv_attr(), user_scratchpad());
    if (layer.strips.rows > 0) {
      for (int i = 0; i < 2; i++) {
        use_scratchpad(layer.strips.forward[i].scratchpad_desc());
        if (with_backward) use_scratchpad(layer.strips.backward[i].scratchpad_desc());
      }
      strip_bytes_[0] = std::max(strip_bytes_[0], layer.strips.input_bytes());
      strip_bytes_[1] = std::max(strip_bytes_[1], layer.strips.output_bytes());
    } else {
      scratchpad_bytes_ = std::max(scratchpad_bytes_, conv_scratchpad);
    }
  }
}

size_t VggNetPlan::activation_element_bytes() const { return precision_ == Precision::Bf16 ? 2 : 4; }

size_t VggNetPlan::turn_buffer_bytes(int slot) const {
  return with_backward_ ? std::max(turn_bytes_[slot], largest_activation_ * sizeof(float)) : turn_bytes_[slot];
}

size_t VggNetPlan::buffer_bytes(bool with_scratchpad) const {
  const size_t image = size_t(batch_) * height_ * width_ * 3 * sizeof(float);
  size_t bytes = with_backward_ ? 2 * image : image;
  for (const LayerPlan& layer : layers_) {
    if (layer.kept) bytes += layer.output.get_size();
    if (layer.has_pool) bytes += layer.pool.workspace_desc().get_size();
  }
  bytes += turn_buffer_bytes(0) + turn_buffer_bytes(1) + relu_mask_words_ * sizeof(uint32_t);
  bytes += strip_bytes_[0] + strip_bytes_[1];
  if (with_backward_ && precision_ == Precision::Bf16) bytes += largest_activation_ * sizeof(kernels::bf16_bits);
  return bytes + (with_scratchpad ? scratchpad_bytes() : 0);
}

std::vector<std::pair<int, memory::desc>> VggNetPlan::weight_formats() const {
  std::vector<std::pair<int, memory::desc>> formats;
  for (int l = 0; l < int(layers_.size()); l++) {
    const LayerPlan& p = layers_[l];
    const bool striped = p.strips.rows > 0;
    formats.emplace_back(l, striped ? p.strips.forward[0].weights_desc() : p.conv.weights_desc());
    if (with_backward_)
      formats.emplace_back(l, striped ? p.strips.backward[0].weights_desc() : p.conv_backward.weights_desc());
  }
  return formats;
}

int VggNetPlan::primitive_count() const {
  int count = 0;
  const bool bf16 = precision_ == Precision::Bf16;
  for (const LayerPlan& p : layers_) {
    // The conversions VggNet makes where formats differ (see its convert()).
    const int convs = p.strips.rows > 0 ? 2 : 1;  // a striped conv: a full strip's and the last strip's
    count += convs + (p.input != p.conv.src_desc()) + (p.output != p.conv.dst_desc()) + p.has_pool;
    if (with_backward_)
      count += convs + (!bf16 && p.grad_output != p.conv_backward.diff_dst_desc()) +
               (p.grad_input != p.conv_backward.diff_src_desc()) + p.has_pool;
  }
  return count;
}

std::string VggNetPlan::convolution_implementation() const {
  for (const LayerPlan& p : layers_)
    if (p.conv.src_desc().dims()[1] >= 16) return p.conv.impl_info_str();
  return layers_.front().conv.impl_info_str();
}

VggNet::VggNet(const dnnl::engine& engine, CpuWeights& weights, const VggNetPlan& plan, SharedScratchpad* shared)
    : engine_(engine),
      stream_(engine),
      batch_(plan.batch_),
      bf16_(plan.precision_ == Precision::Bf16),
      shared_(shared),
      scratchpad_bytes_(plan.scratchpad_bytes()) {
  const int last_layer = int(plan.layers_.size()) - 1;
  if (last_layer >= weights.num_layers())
    throw Error("cpu: the loss needs conv layer " + std::to_string(last_layer) + " but the weights hold " +
                std::to_string(weights.num_layers()));
  // Each step's scratchpad desc, to point them all at one shared buffer at the end.
  std::vector<std::pair<Step*, memory::desc>> scratch_users;
  auto view = [&](const memory& buffer, const memory::desc& d) { return memory(d, engine_, buffer.get_data_handle()); };
  auto flat = [&](size_t count, dt type = dt::f32) {
    return memory(memory::desc({memory::dim(count)}, type, tag::x), engine_);
  };

  image_ = memory(nhwc(plan.batch_, 3, plan.height_, plan.width_), engine_);
  if (!shared_) scratchpad_ = flat(scratchpad_bytes_, dt::u8);
  void* scratchpad = shared_ ? nullptr : scratchpad_.get_data_handle();  // (shared: bound when it runs)
  if (plan.strip_bytes_[0] > 0) strip_input_ = flat(plan.strip_bytes_[0], dt::u8);
  if (plan.strip_bytes_[1] > 0) strip_output_ = flat(plan.strip_bytes_[1], dt::u8);
  if (plan.with_backward_) image_grad_ = memory(image_.get_desc(), engine_);
  layers_.resize(last_layer + 1);
  workspaces_.resize(last_layer + 1);
  // The turn buffers; with a backward they are the gradient's ping-pong buffers too.
  if (plan.turn_buffer_bytes(0) > 0) ping_ = flat(plan.turn_buffer_bytes(0), dt::u8);
  if (plan.turn_buffer_bytes(1) > 0) pong_ = flat(plan.turn_buffer_bytes(1), dt::u8);
  auto turn = [&](int slot) { return slot == 0 ? ping_ : pong_; };
  if (plan.relu_mask_words_ > 0) relu_masks_.reset(new uint32_t[plan.relu_mask_words_]);  // written by each forward
  uint32_t* next_mask = relu_masks_.get();

  memory input = image_;
  for (int l = 0; l <= last_layer; l++) {
    const VggNetPlan::LayerPlan& p = plan.layers_[l];
    Layer& layer = layers_[l];
    layer.shape = p.shape;
    layer.kept = p.kept;
    layer.recomputed = p.recomputed;
    // Where the plan put each map (its slots); a conversion where layouts differ.
    memory src = p.src_slot < 0 ? input : view(turn(p.src_slot), p.conv.src_desc());
    layer.convert_input = convert(input, src);
    layer.output = p.kept ? memory(p.output, engine_) : view(turn(p.output_slot), p.output);
    if (!p.kept && !p.recomputed && plan.with_backward_) {
      layer.relu_mask = next_mask;
      next_mask += relu_mask_words(size_t(batch_) * p.shape.pixels() * p.shape.channels);
    }
    memory dst =
        p.dst_slot < 0 || p.dst_slot == p.output_slot ? layer.output : view(turn(p.dst_slot), p.conv.dst_desc());
    if (p.strips.rows > 0) {
      // The whole map's conv is not created: its src and dst are the strips'.
      layer.strips =
          StripedConv(engine_, p.strips, weights.kernel(l, p.strips.forward[0].weights_desc()),
                      plan.with_backward_ ? weights.kernel(l, p.strips.backward[0].weights_desc()) : memory(),
                      weights.bias(l), strip_input_.get_data_handle(), strip_output_.get_data_handle(), scratchpad);
      layer.conv = {dnnl::primitive(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}};
    } else {
      layer.conv = {dnnl::convolution_forward(p.conv),
                    {{DNNL_ARG_SRC, src},
                     {DNNL_ARG_WEIGHTS, weights.kernel(l, p.conv.weights_desc())},
                     {DNNL_ARG_BIAS, weights.bias(l)},
                     {DNNL_ARG_DST, dst}}};
      scratch_users.push_back({&layer.conv, p.conv.scratchpad_desc()});
    }
    layer.convert_output = convert(dst, layer.output);
    input = layer.output;
    if (p.has_pool) {
      layer.has_pool = true;
      memory pooled = view(turn(p.pool_slot), p.pool.dst_desc());
      layer.pool = {dnnl::pooling_forward(p.pool), {{DNNL_ARG_SRC, layer.output}, {DNNL_ARG_DST, pooled}}};
      if (p.pool.workspace_desc().get_size() > 0) {
        workspaces_[l] = memory(p.pool.workspace_desc(), engine_);
        layer.pool.args[DNNL_ARG_WORKSPACE] = workspaces_[l];
      }
      scratch_users.push_back({&layer.pool, p.pool.scratchpad_desc()});
      input = pooled;
    }
  }

  if (plan.with_backward_) {
    // Gradients live in the two turn buffers (each as large as the largest
    // activation in float32): each step (a conversion between layouts, a
    // conv's or a pool's backward) reads the one and writes the other.
    if (bf16_) conv_grad_ = flat(plan.largest_activation_, dt::bf16);
    memory current = ping_;  // the buffer holding the gradient the next step reads
    auto next = [&](const memory::desc& d) {
      current = current.get_data_handle() == ping_.get_data_handle() ? pong_ : ping_;
      return view(current, d);
    };
    for (int l = last_layer; l >= 0; l--) {
      const VggNetPlan::LayerPlan& p = plan.layers_[l];
      const auto& bwd = p.conv_backward;
      Layer& layer = layers_[l];
      layer.grad_output = view(current, p.grad_output);
      if (p.recomputed) {
        // Into the buffer the gradient is not in (the plan checked that nothing is converted here).
        layer.recomputed_output = view(current.get_data_handle() == ping_.get_data_handle() ? pong_ : ping_, p.output);
        layer.recompute = layer.conv;
        layer.recompute.args[DNNL_ARG_DST] = layer.recomputed_output;
        scratch_users.push_back({&layer.recompute, p.conv.scratchpad_desc()});
      }
      memory diff_dst;
      if (bf16_) {
        // The ReLU backward writes it (the plan checked the layout).
        layer.conv_grad = view(conv_grad_, bwd.diff_dst_desc());
        diff_dst = layer.conv_grad;
      } else {
        diff_dst = p.grad_output == bwd.diff_dst_desc() ? layer.grad_output : next(bwd.diff_dst_desc());
        layer.convert_grad_output = convert(layer.grad_output, diff_dst);
      }
      // d J / d (this conv's input), float32, in the layout that input arrived in.
      memory diff_src =
          l == 0 && image_grad_.get_desc() == bwd.diff_src_desc() ? image_grad_ : next(bwd.diff_src_desc());
      memory grad_input = l == 0 ? image_grad_ : p.grad_input == bwd.diff_src_desc() ? diff_src : next(p.grad_input);
      if (p.strips.rows > 0) {
        layer.conv_backward = {dnnl::primitive(), {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_SRC, diff_src}}};
      } else {
        layer.conv_backward = {dnnl::convolution_backward_data(bwd),
                               {{DNNL_ARG_DIFF_DST, diff_dst},
                                {DNNL_ARG_WEIGHTS, weights.kernel(l, bwd.weights_desc())},
                                {DNNL_ARG_DIFF_SRC, diff_src}}};
        scratch_users.push_back({&layer.conv_backward, bwd.scratchpad_desc()});
      }
      layer.convert_grad_input = convert(diff_src, grad_input);
      if (l == 0) break;
      const VggNetPlan::LayerPlan& below = plan.layers_[l - 1];
      if (below.has_pool) {
        memory grad_prev = next(below.pool_backward.diff_src_desc());
        layer.pool_backward = {dnnl::pooling_backward(below.pool_backward),
                               {{DNNL_ARG_DIFF_DST, grad_input}, {DNNL_ARG_DIFF_SRC, grad_prev}}};
        if (workspaces_[l - 1]) layer.pool_backward.args[DNNL_ARG_WORKSPACE] = workspaces_[l - 1];
        scratch_users.push_back({&layer.pool_backward, below.pool_backward.scratchpad_desc()});
      }
    }
  }

  scratchpad_views_.reserve(scratch_users.size());
  for (const auto& [step, desc] : scratch_users) {
    scratchpad_views_.emplace_back(desc, engine_, scratchpad);
    step->args[DNNL_ARG_SCRATCHPAD] = scratchpad_views_.back();
  }
  bound_scratchpad_ = scratchpad;
}

void VggNet::bind_scratchpad() {
  if (!shared_) return;
  void* scratchpad = shared_->reserve(scratchpad_bytes_);
  if (scratchpad == bound_scratchpad_) return;
  for (memory& view : scratchpad_views_) view.set_data_handle(scratchpad);
  for (Layer& layer : layers_) layer.strips.set_scratchpad(scratchpad);
  bound_scratchpad_ = scratchpad;
}

const void* VggNet::readable_activation(int layer) const {
  const Layer& l = layers_[layer];
  if (l.kept || layer == readable_) return l.output.get_data_handle();
  if (l.recomputed && recomputed_ready_) return l.recomputed_output.get_data_handle();
  throw Error(std::string("cpu: activation: ") + kVgg19[layer].name + "'s activation is not kept");
}

const float* VggNet::activation(int layer) const {
  if (bf16_) throw Error("cpu: activation: the activations are bf16");
  return static_cast<const float*>(readable_activation(layer));
}

const kernels::bf16_bits* VggNet::activation_bf16(int layer) const {
  if (!bf16_) throw Error("cpu: activation_bf16: the activations are float32");
  return static_cast<const kernels::bf16_bits*>(readable_activation(layer));
}

void VggNet::forward(const std::function<void(int)>& visit) {
  bind_scratchpad();
  recomputed_ready_ = false;
  for (int l = 0; l < int(layers_.size()); l++) {
    const Layer& layer = layers_[l];
    layer.convert_input.run(stream_);
    if (layer.strips.active())
      layer.strips.forward(stream_, layer.conv.args.at(DNNL_ARG_SRC), layer.conv.args.at(DNNL_ARG_DST));
    else
      layer.conv.run(stream_);
    layer.convert_output.run(stream_);
    if (layer.relu_mask) {
      stream_.wait();
      const size_t n = size_t(batch_) * layer.shape.pixels() * layer.shape.channels;
      if (bf16_)
        pack_relu_mask(static_cast<const kernels::bf16_bits*>(layer.output.get_data_handle()), n, layer.relu_mask);
      else
        pack_relu_mask(static_cast<const float*>(layer.output.get_data_handle()), n, layer.relu_mask);
    }
    if (visit) {
      stream_.wait();
      readable_ = l;
      visit(l);
      readable_ = -1;
    }
    if (layer.has_pool) layer.pool.run(stream_);
  }
  stream_.wait();
}

void VggNet::backward(const std::function<void(int, float*, kernels::bf16_bits*)>& through_relu) {
  bind_scratchpad();
  const int last = last_layer();
  {
    const Layer& top = layers_[last];
    std::memset(top.grad_output.get_data_handle(), 0,
                size_t(batch_) * top.shape.pixels() * top.shape.channels * sizeof(float));
  }
  for (int l = last; l >= 0; l--) {
    const Layer& layer = layers_[l];
    float* grad = static_cast<float*>(layer.grad_output.get_data_handle());
    auto* conv_grad = bf16_ ? static_cast<kernels::bf16_bits*>(layer.conv_grad.get_data_handle()) : nullptr;
    const size_t n = size_t(batch_) * layer.shape.pixels() * layer.shape.channels;
    if (layer.recomputed) {
      layer.recompute.run(stream_);
      stream_.wait();
      recomputed_ready_ = true;
    }
    if (layer.kept || layer.recomputed)
      through_relu(l, grad, conv_grad);
    else if (bf16_)
      relu_mask_backward_bf16(grad, layer.relu_mask, conv_grad, n);
    else
      relu_mask_backward(grad, layer.relu_mask, n);
    layer.convert_grad_output.run(stream_);
    if (layer.strips.active())
      layer.strips.backward(stream_, layer.conv_backward.args.at(DNNL_ARG_DIFF_DST),
                            layer.conv_backward.args.at(DNNL_ARG_DIFF_SRC));
    else
      layer.conv_backward.run(stream_);
    layer.convert_grad_input.run(stream_);
    if (l > 0 && layers_[l - 1].has_pool) layer.pool_backward.run(stream_);
    stream_.wait();
  }
}

}  // namespace nst::cpu
