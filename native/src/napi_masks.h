// Spatial control's arguments from JavaScript (setTargets' masks,
// estimateMemory's mask shape), checked as napi_args.h checks the others: a
// TypeError or RangeError naming the value, so that a mask of the wrong size
// or out of [0, 1] never reaches the engines.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "engine.h"

namespace nst::napi_masks {

// One image's mask at each layer of `layers` (a loss list), pooled by the
// caller (core's maskAtLayers): an array of one Float32Array per entry, each
// of the layer's positions for an image of height x width, every value in
// [0, 1]. Copied: the worker never reads JS memory.
std::vector<std::vector<float>> layer_masks(Napi::Env env, const Napi::Value& value, const std::string& what,
                                            const std::vector<WeightedLayer>& layers, int height, int width);

// Pointers into masks that layer_masks read.
LayerMasks views(const std::vector<std::vector<float>>& masks);

// estimateMemory's optional `regions` (the most style regions of an item
// when masks are used; absent: 0, none) and `contentMask` (a boolean).
MaskShape mask_shape(Napi::Env env, const Napi::Object& shape, const std::string& what);

}  // namespace nst::napi_masks
