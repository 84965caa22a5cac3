// The VGG-19 conv stack on oneDNN for one (batch, height, width): every
// primitive, activation and gradient buffer is created once here, so that
// forward() and backward() allocate nothing. A net holds what its loss and
// its backward read and no more (the weights are frozen, so no convolution's
// backward reads its input): the loss layers' activations, one bit per
// element of every other layer's ReLU, and two turn buffers that the
// forward's other maps and the backward's gradients take in turn; a Winograd
// conv whose scratchpad would outgrow its maps runs in strips (conv_strips.h).
#pragma once

#include <dnnl.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../engine.h"
#include "conv_strips.h"
#include "kernels/bf16.h"

namespace nst::cpu {

// The weights as they arrived (HWIO) plus, per layer, copies reordered into
// the formats the primitives asked for (cached: nets of every size share them).
class CpuWeights {
 public:
  CpuWeights(const dnnl::engine& engine, const std::vector<ConvWeightsView>& layers);
  int num_layers() const { return int(kernels_.size()); }
  const dnnl::memory& bias(int layer) const { return biases_[layer]; }
  dnnl::memory kernel(int layer, const dnnl::memory::desc& format);
  // The format the weights arrive in: a primitive that asks for it reads them
  // without a copy.
  static dnnl::memory::desc given_format(int layer);

 private:
  dnnl::engine engine_;
  std::vector<dnnl::memory> kernels_;  // HWIO, as given
  std::vector<dnnl::memory> biases_;
  struct Reordered {
    int layer;
    dnnl::memory memory;
  };
  std::vector<Reordered> cache_;
  std::mutex mutex_;
};

struct LayerShape {
  int height, width, channels;
  size_t pixels() const { return size_t(height) * width; }
};

// Which layers run oneDNN's Winograd convolution (F(4x4,3x3), avx512_core,
// blocked nChw16c layout only, float32 only): a static rule, measured in
// bench/RESULTS.md, so that every net of a session (content targets included)
// makes the same choice. Off with NST_CPU_WINOGRAD=0 (or where oneDNN has no
// Winograd kernel), and never in bf16 (vgg_net.cc's winograd_rule says why).
bool winograd_enabled();

// What the loss reads of a net's layers once its forward has run, by layer
// (missing = false).
struct LayerReads {
  // The layer's activation is kept after the forward (its own buffer), for
  // the backward or a read after it. The others' activations and every
  // pooled map go to two buffers used in turn (in a net with a backward, the
  // gradient's ping-pong buffers); they can be read while the forward visits
  // them (VggNet::forward), and the backward keeps only their ReLU's mask,
  // one bit per element (relu_mask.h says why that is all it needs).
  std::vector<bool> kept;
  // The activation is NHWC (the Gram kernels read it as an N x C matrix);
  // other layers may keep a Winograd layer's blocked layout, which the
  // element-wise kernels (ReLU backward, content loss against a target from a
  // net of the same layers) accept.
  std::vector<bool> nhwc;
  // conv1_1's activation is read in the backward but not kept: the backward
  // computes it again from the image, into the turn buffer the gradient is
  // not in (its 3 input channels make it 0.5% of the forward's arithmetic;
  // kept, it is the largest activation, a quarter of the notebook's net).
  bool recompute_first = false;
};

// A net's primitive descriptors and the bytes of every buffer it allocates,
// decided without allocating anything: what VggNet builds from, and what the
// engine's memory estimate adds up (so the estimate is the net's real buffers).
//
// Precision (fp32 or bf16): in bf16 the convolutions take bf16 inputs and
// weights and give bf16 outputs (post-ReLU activations and pooled maps are
// stored in bf16: half the bytes), accumulating in float32; the image, its
// gradient and every gradient buffer stay float32, and the convolutions'
// backward-data reads a bf16 copy of d J / d (conv output) (the ReLU
// backward writes it) and writes d J / d input in float32.
class VggNetPlan {
 public:
  // Runs conv1_1 .. conv[last_layer]; with_backward adds the gradient path.
  // `reads`: which activations are kept, and in which layout.
  // rule_size (default: this net's own): the size of the image whose maps
  // decide which layers run Winograd. A tile's net passes the whole image's,
  // so that a tile computes each layer with the algorithm the whole image
  // does (tile_session.cc: Winograd and direct convolutions round differently).
  VggNetPlan(const dnnl::engine& engine, int batch, int height, int width, int last_layer, Pooling pooling,
             bool with_backward, const LayerReads& reads, Precision precision = Precision::Fp32,
             ImageSize rule_size = {0, 0});

  // Bytes of the buffers VggNet allocates: the image (and its gradient), the
  // kept layers' outputs, max pooling's workspaces, the two turn buffers (the
  // other activations, the pooled maps and the layout and type conversions in
  // the forward; the gradient and its conversions in the backward), with a
  // backward the other layers' ReLU masks (and in bf16 the bf16 copy the
  // convolutions' backward reads), the striped convs' strips, the shared
  // scratchpad.
  size_t buffer_bytes(bool with_scratchpad = true) const;
  // Bytes of the scratchpad the primitives share (the largest any asks for).
  size_t scratchpad_bytes() const { return scratchpad_bytes_ + sizeof(float); }
  // Bytes of turn buffer 0 or 1 (with a backward, at least the largest activation in float32).
  size_t turn_buffer_bytes(int slot) const;
  const LayerShape& shape(int layer) const { return layers_[layer].shape; }
  // Bytes of one element of the activations (4 in fp32, 2 in bf16).
  size_t activation_element_bytes() const;
  // (layer, format) of every weight tensor the primitives read.
  std::vector<std::pair<int, dnnl::memory::desc>> weight_formats() const;
  // Primitives VggNet creates (convolutions, pools, their backward, the
  // layout conversions around Winograd layers): each is generated code.
  int primitive_count() const;
  // The implementation oneDNN chose for the first convolution whose input has
  // 16 or more channels (else the first), e.g. "brgconv:avx512_core_bf16".
  std::string convolution_implementation() const;

 private:
  friend class VggNet;
  struct LayerPlan {
    LayerShape shape;
    bool kept = true;         // the activation has its own buffer (LayerReads::kept)
    bool recomputed = false;  // conv1_1, computed again in the backward (LayerReads::recompute_first)
    // The turn buffer (0 or 1; -1: none) that holds, in the forward, the
    // conv's input converted to its layout, the conv's dst where it is not
    // the output (converted into it) or the output is not kept, the output
    // when not kept, and the pooled map.
    int src_slot = -1, dst_slot = -1, output_slot = -1, pool_slot = -1;
    bool winograd = false;           // conv (and its backward) on nChw16c
    dnnl::memory::desc input;        // what the conv's input arrives as (image, previous output or pooled map)
    dnnl::memory::desc output;       // the post-ReLU activation
    dnnl::memory::desc grad_output;  // d J / d output: float32, the output's layout
    dnnl::memory::desc grad_input;   // d J / d input: float32, the input's layout
    dnnl::convolution_forward::primitive_desc conv;
    bool has_pool = false;  // a pool after this layer, read by the next
    dnnl::pooling_forward::primitive_desc pool;
    dnnl::convolution_backward_data::primitive_desc conv_backward;  // with_backward
    dnnl::pooling_backward::primitive_desc pool_backward;           // with_backward and has_pool
    StripPlan strips;  // a Winograd conv with a large scratchpad: run in strips (rows > 0)
  };
  int batch_, height_, width_;
  bool with_backward_;
  Precision precision_;
  std::vector<LayerPlan> layers_;
  size_t largest_activation_ = 0;   // elements: the size of each gradient buffer
  size_t turn_bytes_[2] = {0, 0};   // the largest map each turn buffer holds in the forward
  size_t relu_mask_words_ = 0;      // with_backward: the not kept layers' ReLU masks
  size_t strip_bytes_[2] = {0, 0};  // the striped convs' strip buffers: a strip's input, its output
  size_t scratchpad_bytes_ = 0;     // the largest scratchpad of any primitive
};

// One scratchpad for nets that never run at the same time (a tile session's
// nets of several shapes): it grows to the largest a net asks for, and each
// net points its primitives at it when it runs.
class SharedScratchpad {
 public:
  void* reserve(size_t bytes) {
    if (bytes > bytes_) {
      data_.reset();
      data_.reset(new std::byte[bytes]);  // not cleared: touched as the primitives use it
      bytes_ = bytes;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<std::byte[]> data_;
  size_t bytes_ = 0;
};

class VggNet {
 public:
  // The net `plan` describes, its buffers allocated; `weights` must hold the
  // plan's layers. With `shared`, its scratchpad is that one (not counted
  // in plan.buffer_bytes(false)), else its own.
  VggNet(const dnnl::engine& engine, CpuWeights& weights, const VggNetPlan& plan, SharedScratchpad* shared = nullptr);

  float* image() { return static_cast<float*>(image_.get_data_handle()); }
  const float* image_gradient() const { return static_cast<float*>(image_grad_.get_data_handle()); }
  float* image_gradient() { return static_cast<float*>(image_grad_.get_data_handle()); }
  int batch() const { return batch_; }
  int last_layer() const { return int(layers_.size()) - 1; }
  const LayerShape& shape(int layer) const { return layers_[layer].shape; }
  // Whether the activations are bf16 (else float32).
  bool bf16() const { return bf16_; }
  // The post-ReLU output of a kept layer (LayerReads), of the layer the
  // forward visits, or of the recomputed conv1_1 in the backward: batch x H x
  // W x C where LayerReads::nhwc said so, else possibly nChw16c (same size: C
  // is a multiple of 16 there); float32, or bf16 where bf16(). Another
  // layer's is an Error.
  const float* activation(int layer) const;
  const kernels::bf16_bits* activation_bf16(int layer) const;

  // `visit(layer)` (if given) runs after each layer's activation is computed,
  // before the next layer's: it may read activation(layer).
  void forward(const std::function<void(int)>& visit = {});
  // From the last layer down. At a kept or recomputed layer `through_relu(layer, grad,
  // conv_grad)` receives d J / d activation in `grad` (float32: the gradient
  // from the layers above, or zeros at the last), adds the loss terms of that
  // layer and takes it back through the layer's ReLU (relu_backward_cpu: the
  // activation's positivity is the mask): in place in `grad` when `conv_grad`
  // is null (fp32), else into `conv_grad`, rounded to bf16 (same layout;
  // bf16). Another layer goes back through its ReLU by its mask (relu_mask.h).
  // Then the gradient flows through the convolution and the pooling below.
  // Ends in image_gradient().
  void backward(const std::function<void(int, float*, kernels::bf16_bits*)>& through_relu);

 private:
  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, dnnl::memory> args;
    void run(dnnl::stream& s) const { primitive.execute(s, args); }
  };
  // A reorder between NHWC and nChw16c; empty when the formats agree.
  struct Convert {
    std::optional<Step> step;
    void run(dnnl::stream& s) const {
      if (step) step->run(s);
    }
  };
  struct Layer {
    LayerShape shape;
    bool kept = true;
    bool recomputed = false;
    uint32_t* relu_mask = nullptr;  // a not kept layer's, in a net with a backward
    Step recompute;                 // recomputed: the conv again, into `recomputed_output`
    dnnl::memory recomputed_output;
    Convert convert_input;   // previous output / pooled -> conv's src format
    Step conv;               // (striped: its src and dst args only)
    StripedConv strips;      // a striped conv (VggNetPlan: LayerPlan::strips)
    Convert convert_output;  // conv's dst -> output (NHWC for a style layer)
    dnnl::memory output;     // post-ReLU activation
    bool has_pool = false;
    Step pool;
    // backward
    dnnl::memory grad_output;     // d J / d output, in one of the ping-pong buffers
    dnnl::memory conv_grad;       // bf16: the ReLU backward's bf16 result, the conv's diff_dst
    Convert convert_grad_output;  // grad_output -> conv's diff_dst format
    Step conv_backward;           // -> gradient of the conv's input
    Convert convert_grad_input;   // conv's diff_src -> the previous layer's format
    Step pool_backward;           // gradient of the pooled tensor -> of the previous layer's output
  };
  Convert convert(const dnnl::memory& from, const dnnl::memory& to);
  const void* readable_activation(int layer) const;

  dnnl::engine engine_;
  dnnl::stream stream_;
  int batch_;
  bool bf16_;
  dnnl::memory image_, image_grad_;
  std::vector<Layer> layers_;
  std::vector<dnnl::memory> workspaces_;
  // The forward's turn buffers; with a backward, float32 gradient buffers
  // too, each as large as the largest activation (ping_, pong_).
  dnnl::memory ping_, pong_;
  std::unique_ptr<uint32_t[]> relu_masks_;  // every not kept layer's, one after the other
  int readable_ = -1;                       // a layer not kept whose activation can be read now
  bool recomputed_ready_ = false;           // the backward has recomputed conv1_1
  dnnl::memory conv_grad_;                  // bf16: the convolutions' diff_dst, as large
  dnnl::memory scratchpad_;                 // its own (without a SharedScratchpad)
  SharedScratchpad* shared_ = nullptr;
  size_t scratchpad_bytes_ = 0;
  // What points at the scratchpad: the primitives' arguments and the strips.
  std::vector<dnnl::memory> scratchpad_views_;
  void* bound_scratchpad_ = nullptr;
  void bind_scratchpad();
  dnnl::memory strip_input_, strip_output_;  // the striped convs' strips
};

// Hands the pages of the buffers freed so far back to the system. glibc
// serves an allocation below its mmap threshold from its heap, and raises
// that threshold (up to 32 MiB) each time a mapped block is freed: so once
// one net is freed, most of the next net's buffers come from the heap, and
// when that net is freed their touched pages stay resident. Measured: after
// an untiled session's target nets were freed, 92 MiB (320x240) and 150 MiB
// (640x480) stayed under the training net's first forward; a tiled render
// at 1024x768 that built a net per tile (two shapes, a budget for one) grew
// by 360 MiB over its plan in one iteration. Called where nets have been
// freed before the next is touched (malloc_trim returns free pages anywhere
// in the heap), so that the memory estimates' nets are what is resident.
void release_freed_pages();

// The reordered weight copies CpuWeights makes for nets of these plans (one
// per layer and format other than the given one), each by a reorder primitive.
struct ReorderedWeights {
  size_t bytes = 0;
  int copies = 0;
};
ReorderedWeights reordered_weights(const std::vector<const VggNetPlan*>& plans);

}  // namespace nst::cpu
