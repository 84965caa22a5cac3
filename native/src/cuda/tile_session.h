// The CUDA engine's tile session (engine.h's TileSession): a Pass of each
// tile shape with its gradient buffers, from a NetPool (tile_pool.h), and the
// loss terms restricted to a tile's core (kernels/tile_core.cuh).
#pragma once

#include <memory>

#include "cuda/network.h"
#include "engine.h"

namespace nst::cuda {

std::unique_ptr<TileSession> make_tile_session(std::shared_ptr<DeviceContext> ctx, const TileSessionConfig& config);

}  // namespace nst::cuda
