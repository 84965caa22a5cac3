#include "cuda/network.h"

#include <algorithm>

#include "cuda/kernels.h"

namespace nst::cuda {

Pass::Pass(DeviceContext& ctx, int batch_, int height, int width, int layers, bool backward)
    : batch(batch_), num_layers(layers) {
  geometry = network_geometry(height, width, layers);
  for (int i = 0; i < layers; i++) {
    const LayerGeometry& g = geometry[i];
    convs.push_back(
        std::make_unique<ConvPlan>(ctx.api, ctx.cudnn, ctx.algos, ctx.tf32, batch, g, backward, ctx.fused_conv));
    acts.emplace_back(sizeof(float) * batch * size_t(g.height) * g.width * g.out_channels, "activations");
    bool pool_used = g.pool_after && i + 1 < layers;
    pooled.emplace_back(
        pool_used ? sizeof(float) * batch * size_t((g.height + 1) / 2) * ((g.width + 1) / 2) * g.out_channels : 0,
        "pooled activations");
  }
  if (ctx.fused_conv) {
    size_t largest = 0;
    for (const auto& a : acts) largest = std::max(largest, a.bytes());
    fused_zeros = DeviceBuffer(largest, "zeros for the fused conv");
    check_cuda(cudaMemsetAsync(fused_zeros.get(), 0, largest, ctx.stream), "cudaMemsetAsync (fused conv zeros)");
  }
}

void Pass::forward(DeviceContext& ctx, const float* input, int upto, void* workspace, size_t workspace_bytes,
                   bool max_pool) {
  const float one = 1.f, zero = 0.f;
  const float* x = input;
  for (int i = 0; i < upto; i++) {
    const LayerGeometry& g = geometry[i];
    const ConvPlan& c = *convs[i];
    const DeviceContext::Layer& layer = ctx.layers[i];
    if (c.fused) {
      // y = relu(conv(x) + 0 * z + bias), z a map of zeros (see fused_zeros).
      check_cudnn(ctx.api,
                  ctx.api.cudnnConvolutionBiasActivationForward(
                      ctx.cudnn, &one, c.x.get(), x, layer.filter->get(), layer.kernel.get(), c.fwd_conv->get(),
                      c.fwd.algo, workspace, workspace_bytes, &zero, c.y.get(), fused_zeros.get(), c.bias.get(),
                      layer.bias.get(), ctx.relu, c.y.get(), acts[i].get()),
                  "cudnnConvolutionBiasActivationForward");
      ctx.profiler.mark("conv forward", std::string(kVgg19[i].name) + " (+bias+relu)");
    } else {
      check_cudnn(ctx.api,
                  ctx.api.cudnnConvolutionForward(ctx.cudnn, &one, c.x.get(), x, layer.filter->get(),
                                                  layer.kernel.get(), c.fwd_conv->get(), c.fwd.algo, workspace,
                                                  workspace_bytes, &zero, c.y.get(), acts[i].get()),
                  "cudnnConvolutionForward");
      ctx.profiler.mark("conv forward", kVgg19[i].name);
      kernels::launch_bias_relu(acts[i].f(), layer.bias.f(), map_floats(i), g.out_channels, ctx.stream);
      check_launch("bias_relu kernel");
      ctx.profiler.mark("own kernels", std::string("bias+relu ") + kVgg19[i].name);
    }
    x = acts[i].f();
    if (g.pool_after && i + 1 < upto) {
      kernels::launch_pool_forward(acts[i].f(), pooled[i].f(), batch, g.height, g.width, g.out_channels, max_pool,
                                   ctx.stream);
      check_launch("pool_forward kernel");
      ctx.profiler.mark("own kernels", std::string("pool forward ") + kVgg19[i].name);
      x = pooled[i].f();
    }
  }
}

void gram(DeviceContext& ctx, const float* a, float* g, int c, long long pixels, int batch, float alpha, float beta) {
  check_cublas(ctx.api,
               ctx.api.cublasSgemmStridedBatched(ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_T, c, c, int(pixels), &alpha, a, c,
                                                 pixels * c, a, c, pixels * c, &beta, g, c, (long long)c * c, batch),
               "cublasSgemmStridedBatched (Gram)");
}

}  // namespace nst::cuda
