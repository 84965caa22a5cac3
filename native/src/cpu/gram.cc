#include "gram.h"

#include <dnnl.hpp>

#include "../engine.h"

namespace nst::cpu {

// dnnl_sgemm is row-major and runs on oneDNN's own OpenMP threads, so the
// Gram products share one thread pool with the convolutions (OpenBLAS would
// bring a second, spinning pool onto the same two cores).
static void sgemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                  float beta, float* c, int ldc) {
  if (dnnl::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != dnnl::status::success)
    throw Error("cpu: dnnl_sgemm failed");
}

void gram(const float* a, int n, int c, float scale, float accumulate, float* out) {
  sgemm('T', 'N', c, c, n, scale, a, c, a, c, accumulate, out, c);
}

void add_gram_gradient(const float* a, int n, int c, const float* d, float* grad) {
  sgemm('N', 'N', n, c, c, 1.f, a, c, d, c, 1.f, grad, c);
}

}  // namespace nst::cpu
