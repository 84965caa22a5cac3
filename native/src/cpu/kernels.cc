#include "kernels.h"

#include <cmath>

#include <dnnl.hpp>

#include "../engine.h"

namespace nst::cpu {

void relu_mask(float* grad, const float* act, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) grad[i] = act[i] > 0.f ? grad[i] : 0.f;
}

double content_loss(const float* a, const float* c, size_t n, float coef, float* grad) {
  double sum = 0;
  if (grad) {
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < n; i++) {
      float d = a[i] - c[i];
      sum += double(d) * d;
      grad[i] += coef * d;
    }
  } else {
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < n; i++) {
      float d = a[i] - c[i];
      sum += double(d) * d;
    }
  }
  return sum;
}

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

double style_loss(const float* a, int n, int c, const float* target, float coef, float* scratch, float* grad) {
  gram(a, n, c, 1.f / float(n), 0.f, scratch);
  const size_t cc = size_t(c) * c;
  double sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
  for (size_t i = 0; i < cc; i++) {
    float d = scratch[i] - target[i];
    scratch[i] = d;
    sum += double(d) * d;
  }
  if (grad) sgemm('N', 'N', n, c, c, coef, a, c, scratch, c, 1.f, grad, c);
  return sum;
}

double total_variation(const float* x, int h, int w, float coef, float* grad) {
  const int row = w * 3;
  double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (int i = 0; i < h; i++) {
    const float* xr = x + size_t(i) * row;
    for (int j = 0; j < row; j++) {
      float down = i + 1 < h ? xr[j + row] - xr[j] : 0.f;
      float right = j + 3 < row ? xr[j + 3] - xr[j] : 0.f;
      sum += double(down) * down + double(right) * right;
      if (grad) {
        float up = i > 0 ? xr[j] - xr[j - row] : 0.f;
        float left = j >= 3 ? xr[j] - xr[j - 3] : 0.f;
        grad[size_t(i) * row + j] += 2.f * coef * (up - down + left - right);
      }
    }
  }
  return sum;
}

void adam_update(float* x, const float* g, float* m, float* v, size_t n, double lr_t, double beta1, double beta2,
                 double eps) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    double gi = g[i];
    double mi = beta1 * m[i] + (1 - beta1) * gi;
    double vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    // The moments are stored as float32 before x uses them, as in the reference.
    m[i] = float(mi);
    v[i] = float(vi);
    x[i] = float(x[i] - lr_t * double(m[i]) / (std::sqrt(double(v[i])) + eps));
  }
}

}  // namespace nst::cpu
