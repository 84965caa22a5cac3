#include "napi_masks.h"

#include "napi_args.h"
#include "tile_geometry.h"

namespace nst::napi_masks {

using namespace nst::napi_args;

std::vector<std::vector<float>> layer_masks(Napi::Env env, const Napi::Value& value, const std::string& what,
                                            const std::vector<WeightedLayer>& layers, int height, int width) {
  Napi::Array list = array_arg(env, value, what);
  if (list.Length() != layers.size())
    range_error(env, what + " must hold one mask per loss layer (" + std::to_string(layers.size()) + "), got " +
                         std::to_string(list.Length()));
  std::vector<std::vector<float>> out;
  for (uint32_t l = 0; l < list.Length(); l++) {
    const int conv = layers[l].conv_index;
    const std::string lwhat = what + "[" + std::to_string(l) + "] (" + kVgg19[conv].name + ")";
    const long long positions = (long long)layer_extent(height, conv) * layer_extent(width, conv);
    auto mask = floats_arg(env, list.Get(l), lwhat, positions);
    std::vector<float> copy(mask.Data(), mask.Data() + mask.ElementLength());
    for (float v : copy)
      if (!(v >= 0.f && v <= 1.f)) range_error(env, lwhat + " must lie in 0..1");
    out.push_back(std::move(copy));
  }
  return out;
}

LayerMasks views(const std::vector<std::vector<float>>& masks) {
  LayerMasks out;
  for (const auto& m : masks) out.push_back(m.data());
  return out;
}

MaskShape mask_shape(Napi::Env env, const Napi::Object& shape, const std::string& what) {
  MaskShape masks;
  if (!shape.Get("regions").IsUndefined()) masks.regions = int_field(env, shape, "regions", what, 0, 1 << 16);
  const Napi::Value content = shape.Get("contentMask");
  if (!content.IsUndefined()) {
    if (!content.IsBoolean()) type_error(env, what + ".contentMask must be a boolean");
    masks.content_mask = content.As<Napi::Boolean>().Value();
  }
  return masks;
}

}  // namespace nst::napi_masks
