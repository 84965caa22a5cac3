#include "gram.h"

#include <dnnl.hpp>

#include <algorithm>

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

// Rows [row, row + rows) of the N x C bf16 matrix, widened into scratch.
static void widen_rows(const kernels::bf16_bits* a, size_t row, size_t rows, int c, float* scratch) {
  const kernels::bf16_bits* from = a + row * size_t(c);
  const size_t count = rows * size_t(c);
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < count; i++) scratch[i] = kernels::bf16_to_float(from[i]);
}

static int block_rows(int c) { return std::max(1, int(kGramScratchFloats / size_t(c))); }

void gram(const kernels::bf16_bits* a, int n, int c, float scale, float accumulate, float* out, float* scratch) {
  const int block = block_rows(c);
  for (int row = 0; row < n; row += block) {
    const int rows = std::min(block, n - row);
    widen_rows(a, size_t(row), size_t(rows), c, scratch);
    sgemm('T', 'N', c, c, rows, scale, scratch, c, scratch, c, row == 0 ? accumulate : 1.f, out, c);
  }
}

void add_gram_gradient(const kernels::bf16_bits* a, int n, int c, const float* d, float* grad, float* scratch) {
  const int block = block_rows(c);
  for (int row = 0; row < n; row += block) {
    const int rows = std::min(block, n - row);
    widen_rows(a, size_t(row), size_t(rows), c, scratch);
    sgemm('N', 'N', rows, c, c, 1.f, scratch, c, d, c, 1.f, grad + size_t(row) * c, c);
  }
}

}  // namespace nst::cpu
