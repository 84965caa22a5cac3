// The cpu engine's tile session (engine.h's TileSession): VggNets of the
// tiles' shapes (vgg_net.h) from a NetPool (tile_pool.h), and the loss terms
// restricted to a tile's core.
#pragma once

#include <dnnl.hpp>

#include <memory>
#include <vector>

#include "../engine.h"
#include "vgg_net.h"

namespace nst::cpu {

std::unique_ptr<TileSession> make_tile_session(const dnnl::engine& engine, std::shared_ptr<CpuWeights> weights,
                                               const TileSessionConfig& config);

TileMemory tile_memory(const dnnl::engine& engine, const TileSessionConfig& config,
                       const std::vector<ImageSize>& tile_shapes);

}  // namespace nst::cpu
