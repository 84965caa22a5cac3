// Key of the per-shape cuDNN algorithm cache (AlgoCache in conv.h).
#pragma once

#include <tuple>

namespace nst::cuda {

// FusedForward: forward restricted to IMPLICIT_PRECOMP_GEMM (see ConvPlan in conv.h).
enum class ConvDirection { Forward, BackwardData, FusedForward };

struct ConvKey {
  int batch, height, width, in_channels, out_channels, math;
  ConvDirection direction;
  bool operator<(const ConvKey& o) const {
    return std::tie(batch, height, width, in_channels, out_channels, math, direction) <
           std::tie(o.batch, o.height, o.width, o.in_channels, o.out_channels, o.math, o.direction);
  }
};

}  // namespace nst::cuda
