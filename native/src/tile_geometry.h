// The tile geometry of the layer table, for both engines' tile sessions: the
// same arithmetic as packages/core/src/tiling.ts (read it for why tiling is
// exact), and the check of a tile the caller hands over.
#pragma once

#include <string>
#include <vector>

#include "engine.h"
#include "session_config.h"

namespace nst {

// Image pixels per position of conv layer `index` (the poolings before it).
inline int layer_stride(int index) {
  int stride = 1;
  for (int i = 0; i < index; i++)
    if (kVgg19[i].pool_after) stride *= 2;
  return stride;
}

// Image pixels beyond its own cell that can change an activation of conv
// layer `index`, on each side (conv5_1: 70).
inline int receptive_margin(int index) {
  int margin = 0;
  for (int i = 0; i <= index; i++) margin += layer_stride(i);
  return margin;
}

// The halo a tile needs for a loss reaching conv layer `deepest`: the margin
// rounded up to the layer's stride (conv5_1: 80).
inline int tile_halo(int deepest) {
  const int stride = layer_stride(deepest);
  return (receptive_margin(deepest) + stride - 1) / stride * stride;
}

// Positions of conv layer `index` along an image axis of n pixels (each 2x2
// SAME pooling before it takes n to ceil(n / 2)).
inline int layer_extent(int n, int index) {
  for (int i = 0; i < index; i++)
    if (kVgg19[i].pool_after) n = (n + 1) / 2;
  return n;
}

// The tile's core in the positions of conv layer `index`, relative to the
// extended region's own positions there (an end at the image's border rounds
// up, as the image's own pooling does).
inline PixelRect core_at_layer(const TileGeometry& t, int index) {
  const int s = layer_stride(index);
  auto up = [s](int v) { return (v + s - 1) / s; };
  return {(t.core.y0 - t.extended.y0) / s, up(t.core.y1 - t.extended.y0), (t.core.x0 - t.extended.x0) / s,
          up(t.core.x1 - t.extended.x0)};
}

// Why `t` would not give the exact loss for a loss reaching conv layer
// `deepest`, or "" when it does: the core inside the extended region inside
// the image; the core's and the region's origins on the layer's stride, their
// ends on it or at the image's border; a halo at least tile_halo(deepest) on
// every side the image does not cut; within max_height x max_width.
inline std::string tile_geometry_problem(const TileGeometry& t, int deepest, int max_height, int max_width) {
  const int s = layer_stride(deepest), halo = tile_halo(deepest);
  const PixelRect &c = t.core, &e = t.extended;
  const int h = t.image_height, w = t.image_width;
  if (h < 1 || w < 1) return "the image is empty";
  if (c.y0 >= c.y1 || c.x0 >= c.x1) return "the core is empty";
  if (e.y0 < 0 || e.x0 < 0 || e.y1 > h || e.x1 > w) return "the extended region leaves the image";
  if (c.y0 < e.y0 || c.x0 < e.x0 || c.y1 > e.y1 || c.x1 > e.x1) return "the core leaves the extended region";
  for (int v : {c.y0, c.x0, e.y0, e.x0})
    if (v % s != 0) return "an origin is not a multiple of " + std::to_string(s);
  if ((c.y1 % s != 0 && c.y1 != h) || (c.x1 % s != 0 && c.x1 != w) || (e.y1 % s != 0 && e.y1 != h) ||
      (e.x1 % s != 0 && e.x1 != w))
    return "an end is neither a multiple of " + std::to_string(s) + " nor the image's border";
  if ((e.y0 > 0 && c.y0 - e.y0 < halo) || (e.x0 > 0 && c.x0 - e.x0 < halo) || (e.y1 < h && e.y1 - c.y1 < halo) ||
      (e.x1 < w && e.x1 - c.x1 < halo))
    return "the halo is under " + std::to_string(halo) + " pixels";
  if (e.height() > max_height || e.width() > max_width)
    return "the extended region is " + std::to_string(e.width()) + "x" + std::to_string(e.height()) +
           ", more than the session's " + std::to_string(max_width) + "x" + std::to_string(max_height);
  return "";
}

// The one validation of a tile session's configuration (the addon calls it
// before Engine::create_tile_session and estimate_tile_memory): as a
// session's of the largest tile, and a budget that is a number of bytes.
inline void validate_tile_session_config(const TileSessionConfig& config, int num_layers) {
  SessionConfig as_session;
  as_session.height = config.max_tile_height;
  as_session.width = config.max_tile_width;
  as_session.pooling = config.pooling;
  as_session.loss = config.loss;
  validate_session_config(as_session, num_layers);
  if (!(config.net_budget_bytes >= 0)) throw Error("netBudget must be a number of bytes, 0 or more");
}

}  // namespace nst
