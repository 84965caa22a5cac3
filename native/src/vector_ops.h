// The host vector arithmetic of core's L-BFGS (packages/core/src/lbfgs.ts,
// VectorOps): its two-loop recursion reads 2 x history vectors of the image's
// size every iteration, which in JavaScript cost more than a VGG evaluation
// at 400x300. Same arithmetic as the JavaScript twin (JS_VECTOR_OPS): each
// product in double, axpy rounded to float once per element.
#pragma once

#include <cstddef>

namespace nst {

// sum a[i] * b[i] over n values, accumulated in double.
double vector_dot(const float* a, const float* b, std::size_t n);

// y[i] = float(y[i] + alpha * x[i]) over n values, computed in double.
void vector_axpy(double alpha, const float* x, float* y, std::size_t n);

}  // namespace nst
