#include "cuda/geometry.h"

#include "engine.h"
#include "kernels/pool_math.h"

namespace nst::cuda {

std::vector<LayerGeometry> network_geometry(int height, int width, int num_layers) {
  std::vector<LayerGeometry> layers;
  int h = height, w = width;
  for (int i = 0; i < num_layers; i++) {
    const VggLayerShape& v = kVgg19[i];
    layers.push_back({h, w, v.in_channels, v.out_channels, v.pool_after});
    if (v.pool_after) {
      h = kernels::pooled_size(h);
      w = kernels::pooled_size(w);
    }
  }
  return layers;
}

}  // namespace nst::cuda
