#include "cuda/network.h"

#include <algorithm>

#include "cuda/kernels.h"

namespace nst::cuda {

Pass::Pass(Core& core, int batch_, int height, int width, int layers, bool backward)
    : batch(batch_), num_layers(layers) {
  geometry = network_geometry(height, width, layers);
  for (int i = 0; i < layers; i++) {
    const LayerGeometry& g = geometry[i];
    convs.push_back(
        std::make_unique<ConvPlan>(core.api, core.cudnn, core.algos, core.tf32, batch, g, backward, core.fused_conv));
    acts.emplace_back(sizeof(float) * batch * size_t(g.height) * g.width * g.out_channels, "activations");
    bool pool_used = g.pool_after && i + 1 < layers;
    pooled.emplace_back(pool_used ? sizeof(float) * batch * size_t((g.height + 1) / 2) * ((g.width + 1) / 2) *
                                        g.out_channels
                                  : 0,
                        "pooled activations");
  }
}

void Pass::forward(Core& core, const float* input, int upto, void* workspace, size_t workspace_bytes,
                   bool max_pool) {
  const float one = 1.f, zero = 0.f;
  const float* x = input;
  for (int i = 0; i < upto; i++) {
    const LayerGeometry& g = geometry[i];
    const ConvPlan& c = *convs[i];
    const Core::Layer& layer = core.layers[i];
    if (c.fused) {
      // y = relu(conv(x) + 0 * z + bias), z aliasing y as cuDNN allows.
      check_cudnn(core.api,
                  core.api.cudnnConvolutionBiasActivationForward(
                      core.cudnn, &one, c.x.get(), x, layer.filter->get(), layer.kernel.get(), c.fwd_conv->get(),
                      c.fwd.algo, workspace, workspace_bytes, &zero, c.y.get(), acts[i].get(), c.bias.get(),
                      layer.bias.get(), core.relu, c.y.get(), acts[i].get()),
                  "cudnnConvolutionBiasActivationForward");
      core.profiler.mark("conv forward", std::string(kVgg19[i].name) + " (+bias+relu)");
    } else {
      check_cudnn(core.api,
                  core.api.cudnnConvolutionForward(core.cudnn, &one, c.x.get(), x, layer.filter->get(),
                                                   layer.kernel.get(), c.fwd_conv->get(), c.fwd.algo, workspace,
                                                   workspace_bytes, &zero, c.y.get(), acts[i].get()),
                  "cudnnConvolutionForward");
      core.profiler.mark("conv forward", kVgg19[i].name);
      launch_bias_relu(acts[i].f(), layer.bias.f(), map_floats(i), g.out_channels, core.stream);
      check_launch("bias_relu kernel");
      core.profiler.mark("own kernels", std::string("bias+relu ") + kVgg19[i].name);
    }
    x = acts[i].f();
    if (g.pool_after && i + 1 < upto) {
      launch_pool_forward(acts[i].f(), pooled[i].f(), batch, g.height, g.width, g.out_channels, max_pool,
                          core.stream);
      check_launch("pool_forward kernel");
      core.profiler.mark("own kernels", std::string("pool forward ") + kVgg19[i].name);
      x = pooled[i].f();
    }
  }
}

void gram(Core& core, const float* a, float* g, int c, long long pixels, int batch, float alpha, float beta) {
  check_cublas(core.api,
               core.api.cublasSgemmStridedBatched(core.cublas, CUBLAS_OP_N, CUBLAS_OP_T, c, c, int(pixels), &alpha, a,
                                                  c, pixels * c, a, c, pixels * c, &beta, g, c,
                                                  (long long)c * c, batch),
               "cublasSgemmStridedBatched (Gram)");
}

int deepest_layer(const LossSpec& loss) {
  int deepest = -1;
  for (const auto& l : loss.content) deepest = std::max(deepest, l.conv_index);
  for (const auto& l : loss.style) deepest = std::max(deepest, l.conv_index);
  return deepest;
}

}  // namespace nst::cuda
