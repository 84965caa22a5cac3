// The engine's own kernels: everything cuDNN and cuBLAS do not do, one
// family per file in native/src/kernels/ (each with its CPU reference and
// stated precision). Every launcher enqueues its kernel on `stream` and
// returns at once; the caller checks the launch with check_launch (check.h),
// which reads cudaGetLastError(). Tensors are float32 NHWC.
#pragma once

#include "kernels/adam.cuh"
#include "kernels/bias_relu.cuh"
#include "kernels/common.h"
#include "kernels/masks.cuh"
#include "kernels/pool.cuh"
#include "kernels/relu_backward.cuh"
#include "kernels/style_gram_diff.cuh"
#include "kernels/temporal_loss.cuh"
#include "kernels/tile_core.cuh"
#include "kernels/tv_loss.cuh"
