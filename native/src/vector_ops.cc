#include "vector_ops.h"

namespace nst {

namespace {
// Below this many values one thread is faster than waking the others.
constexpr std::size_t kParallelFrom = 1 << 16;
}  // namespace

double vector_dot(const float* a, const float* b, std::size_t n) {
  double sum = 0;
#pragma omp parallel for simd reduction(+ : sum) if (n >= kParallelFrom)
  for (std::size_t i = 0; i < n; i++) sum += double(a[i]) * double(b[i]);
  return sum;
}

void vector_axpy(double alpha, const float* x, float* y, std::size_t n) {
#pragma omp parallel for simd if (n >= kParallelFrom)
  for (std::size_t i = 0; i < n; i++) y[i] = float(double(y[i]) + alpha * double(x[i]));
}

}  // namespace nst
