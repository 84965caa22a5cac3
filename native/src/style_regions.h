// Spatial control, the host side both engines share: where each batch item's
// style regions sit among a session's style targets, and the masses (sum of
// the weights) of their masks at each style layer. Masks are pooled and
// checked before they get here (core's maskAtLayers, the addon's argument
// checks); packages/core/src/masks.ts has the mathematics.
#pragma once

#include <string>
#include <vector>

#include "engine.h"
#include "tile_geometry.h"

namespace nst {

// One region of one batch item.
struct RegionSlot {
  int item = 0;
  // Per style layer (LossSpec::style order): its mask at the session's layer
  // size and that mask's mass; empty: unmasked (the plain Gram, exactly).
  LayerMasks mask;
  std::vector<double> mass;
};

// The regions of a batch, item by item: item b's are slots[first[b]] up to
// slots[first[b + 1]]. Without masks, one unmasked slot per item, slot b
// for item b: the unmasked session's layout.
struct RegionLayout {
  std::vector<RegionSlot> slots;
  std::vector<int> first;
  bool masked() const {
    for (const RegionSlot& s : slots)
      if (!s.mask.empty()) return true;
    return false;
  }
};

inline double mask_mass(const float* m, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += m[i];
  return s;
}

// `positions[l]`: the session's positions at style layer l. Throws for a
// region without styles or a style naming no region (the glue never builds
// either); an item with neither styles nor masks (a content-only loss) gets
// its one unmasked slot.
inline RegionLayout region_layout(const std::vector<TargetsView>& targets, const std::vector<size_t>& positions) {
  RegionLayout out;
  for (size_t b = 0; b < targets.size(); b++) {
    const TargetsView& t = targets[b];
    out.first.push_back(int(out.slots.size()));
    const size_t regions = t.style_masks.empty() ? 1 : t.style_masks.size();
    for (size_t r = 0; r < regions; r++) {
      RegionSlot slot{int(b), t.style_masks.empty() ? LayerMasks{} : t.style_masks[r], {}};
      for (size_t l = 0; l < slot.mask.size(); l++) slot.mass.push_back(mask_mass(slot.mask[l], positions[l]));
      bool has_style = false;
      for (const StyleImageView& s : t.styles) has_style = has_style || size_t(s.mask_index) == r;
      // (An item without styles and masks: a loss without style layers, one unused slot.)
      if (!has_style && !(t.styles.empty() && t.style_masks.empty()))
        throw Error("batch item " + std::to_string(b) + ": style region " + std::to_string(r) + " has no style");
      out.slots.push_back(std::move(slot));
    }
    for (const StyleImageView& s : t.styles)
      if (s.mask_index < 0 || size_t(s.mask_index) >= regions)
        throw Error("batch item " + std::to_string(b) + ": a style names no region");
  }
  out.first.push_back(int(out.slots.size()));
  return out;
}

// The mass of style `s`'s region at style layer l (conv layer `conv`), at the
// style image's layer size. Throws Error(Unsupported, "styleRegion") when it
// is black: its guided Gram is undefined (the job layer refuses such a file
// first; this guards the engine's own callers).
inline double region_mass(const StyleImageView& s, size_t l, int conv) {
  const size_t n = size_t(layer_extent(s.image.height, conv)) * layer_extent(s.image.width, conv);
  const double mass = mask_mass(s.region[l], n);
  if (!(mass > 0))
    throw Error(ErrorCode::Unsupported, "styleRegion",
                std::string("a style's region selects nothing of its painting (black at ") + kVgg19[conv].name + ")");
  return mass;
}

}  // namespace nst
