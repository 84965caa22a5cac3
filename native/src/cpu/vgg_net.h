// The VGG-19 conv stack on oneDNN for one (batch, height, width): every
// primitive, activation and gradient buffer is created once here, so that
// forward() and backward() allocate nothing.
#pragma once

#include <dnnl.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../engine.h"

namespace nst::cpu {

// The weights as they arrived (HWIO) plus, per layer, copies reordered into
// the formats the primitives asked for (cached: nets of every size share them).
class CpuWeights {
 public:
  CpuWeights(const dnnl::engine& engine, const std::vector<ConvWeightsView>& layers);
  int num_layers() const { return int(kernels_.size()); }
  const dnnl::memory& bias(int layer) const { return biases_[layer]; }
  dnnl::memory kernel(int layer, const dnnl::memory::desc& format);

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

class VggNet {
 public:
  // Runs conv1_1 .. conv[last_layer]; with_backward adds the gradient path.
  VggNet(const dnnl::engine& engine, CpuWeights& weights, int batch, int height, int width,
         int last_layer, Pooling pooling, bool with_backward);

  float* image() { return static_cast<float*>(image_.get_data_handle()); }
  const float* image_gradient() const { return static_cast<float*>(image_grad_.get_data_handle()); }
  float* image_gradient() { return static_cast<float*>(image_grad_.get_data_handle()); }
  int batch() const { return batch_; }
  int last_layer() const { return int(layers_.size()) - 1; }
  const LayerShape& shape(int layer) const { return layers_[layer].shape; }
  // The post-ReLU output of a layer, batch x H x W x C.
  const float* activation(int layer) const;

  void forward();
  // From the last layer down: `add_loss_gradient(layer, grad)` adds the loss
  // terms of that layer to d J / d activation (which holds the gradient from
  // the layers above, or zeros at the last), then the gradient flows through
  // the ReLU, the convolution and the pooling below. Ends in image_gradient().
  void backward(const std::function<void(int, float*)>& add_loss_gradient);

 private:
  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, dnnl::memory> args;
    void run(dnnl::stream& s) const { primitive.execute(s, args); }
  };
  struct Layer {
    LayerShape shape;
    dnnl::memory output;  // post-ReLU activation
    Step conv;
    bool has_pool = false;
    Step pool;
    // backward
    dnnl::memory grad_output;  // d J / d output, in one of the ping-pong buffers
    Step conv_backward;        // grad_output -> gradient of the conv's input
    Step pool_backward;        // gradient of the pooled tensor -> of the previous layer's output
  };
  dnnl::memory scratch_for(const dnnl::memory::desc& desc);

  dnnl::engine engine_;
  dnnl::stream stream_;
  int batch_;
  dnnl::memory image_, image_grad_;
  std::vector<Layer> layers_;
  std::vector<dnnl::memory> pooled_, workspaces_;
  dnnl::memory ping_, pong_;  // gradient buffers, each as large as the largest activation
  dnnl::memory scratchpad_;
  size_t scratch_bytes_ = 0;
};

}  // namespace nst::cpu
