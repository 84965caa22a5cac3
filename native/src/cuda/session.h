// A CUDA session: one image size and batch, one loss, buffers allocated once.
#pragma once

#include <memory>

#include "cuda/network.h"
#include "engine.h"

namespace nst::cuda {

std::unique_ptr<Session> make_session(std::shared_ptr<DeviceContext> ctx, const SessionConfig& config);

}  // namespace nst::cuda
