// The shape of every conv layer of the VGG-19 prefix at one image size (pure
// host code: tested by host_test.cc without a GPU).
#pragma once

#include <vector>

namespace nst::cuda {

// Conv layer i of VGG-19 at one image size: input/output spatial size is
// height x width (3x3 SAME convs keep it), then an optional 2x2 SAME pool.
struct LayerGeometry {
  int height;
  int width;
  int in_channels;
  int out_channels;
  bool pool_after;
};

std::vector<LayerGeometry> network_geometry(int height, int width, int num_layers);

}  // namespace nst::cuda
