// Self-test of the engine's own kernels (native/src/kernels, one family per
// file) against their CPU references, llm.c style: one loop over the table of
// families below, each run on its sizes and through both index widths (32-bit,
// and the 64-bit path forced), each compared with the tolerance its family
// states. The sizes are of three kinds: small odd ones (SAME pooling's partial
// windows), 1-wide maps, and ones past the launchers' grid caps (4096 blocks
// of 256 threads for the maps, 1024 per batch item for the losses, 256 for the
// Grams), where each thread's grid-stride loop runs more than once. Needs no
// cuDNN or cuBLAS. Built for a GPU (bench/gpu/prepare.sh, run first by
// bench/gpu/run.sh so a kernel bug shows up before the end-to-end parity
// tests) and for the CPU stand-in (CI). Exit code 0 when every kernel matches.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda/kernels.h"

using namespace nst::kernels;
using Vec = std::vector<float>;

static int failures = 0;

static void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& host) : n(host.size()) {
    check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> out(n);
    check(cudaDeviceSynchronize(), "kernel");
    check(cudaMemcpy(out.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return out;
  }
};

static Vec random_vec(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Vec v(n);
  for (float& x : v) x = u(rng);
  return v;
}

static std::vector<double> zero_losses(int batch) { return std::vector<double>(size_t(batch) * kLossSlots, 0.0); }

static void expect_close(const char* name, const Vec& got, const Vec& want, double tol) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); i++) {
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / (1.0 + std::fabs(double(want[i]))));
  }
  bool ok = worst <= tol && got.size() == want.size();
  std::printf("%-28s %s (max rel err %.2e)\n", name, ok ? "ok" : "FAIL", worst);
  if (!ok) failures++;
}

static void expect_close(const char* name, double got, double want, double tol) {
  double rel = std::fabs(got - want) / std::max(std::fabs(want), 1e-30);
  bool ok = rel <= tol;
  std::printf("%-28s %s (%.9g vs %.9g)\n", name, ok ? "ok" : "FAIL", got, want);
  if (!ok) failures++;
}

// One loss slot of every batch item, kernel against reference.
static void expect_losses(const char* name, const std::vector<double>& got, const std::vector<double>& want, int batch,
                          LossSlot slot, double tol) {
  for (int b = 0; b < batch; b++) expect_close(name, got[b * kLossSlots + slot], want[b * kLossSlots + slot], tol);
}

// A case: maps of batch x height x width x channels (each family reads it as
// its shape; a vector is height values).
struct Size {
  int batch, height, width, channels;
  size_t elements() const { return size_t(batch) * height * width * channels; }
};

static void check_bias_relu(const Size& s) {
  const int c = s.channels;
  Vec y = random_vec(s.elements(), 3), bias = random_vec(c, 4, -0.3f, 0.3f), ref = y;
  bias_relu_cpu(ref.data(), bias.data(), ref.size(), c);
  Dev<float> yb(y), bb(bias);
  launch_bias_relu(yb.p, bb.p, y.size(), c, 0);
  expect_close("bias_relu", yb.get(), ref, kBiasReluTolerance);
}

static void check_pooling(const Size& s, bool max_pool) {
  const int batch = s.batch, h = s.height, w = s.width, c = s.channels;
  Vec in = random_vec(s.elements(), 1);
  for (size_t i = 0; i < in.size(); i += 3) in[i] = std::max(in[i], 0.f);  // ReLU-like zeros for the mask
  Vec d_out = random_vec(size_t(batch) * pooled_size(h) * pooled_size(w) * c, 2);
  Vec out_ref(d_out.size()), d_in_ref(in.size()), d_in_masked_ref(in.size());
  pool_forward_cpu(in.data(), out_ref.data(), batch, h, w, c, max_pool);
  pool_backward_cpu(d_out.data(), in.data(), d_in_ref.data(), batch, h, w, c, max_pool, false);
  pool_backward_cpu(d_out.data(), in.data(), d_in_masked_ref.data(), batch, h, w, c, max_pool, true);

  Dev<float> in_buf(in), d_out_buf(d_out), out_buf(Vec(out_ref.size())), grad_buf(Vec(in.size()));
  launch_pool_forward(in_buf.p, out_buf.p, batch, h, w, c, max_pool, 0);
  expect_close(max_pool ? "pool_forward max" : "pool_forward avg", out_buf.get(), out_ref, kPoolTolerance);
  launch_pool_backward(d_out_buf.p, in_buf.p, grad_buf.p, batch, h, w, c, max_pool, false, 0);
  expect_close(max_pool ? "pool_backward max" : "pool_backward avg", grad_buf.get(), d_in_ref, kPoolTolerance);
  launch_pool_backward(d_out_buf.p, in_buf.p, grad_buf.p, batch, h, w, c, max_pool, true, 0);
  expect_close(max_pool ? "pool_backward max + mask" : "pool_backward avg + mask", grad_buf.get(), d_in_masked_ref,
               kPoolTolerance);
}
static void check_avg_pooling(const Size& s) { check_pooling(s, false); }
static void check_max_pooling(const Size& s) { check_pooling(s, true); }

static void check_relu_backward(const Size& s) {
  const int batch = s.batch;
  const size_t per_item = s.elements() / batch;
  Vec g = random_vec(s.elements(), 5), a = random_vec(s.elements(), 6), t = random_vec(s.elements(), 7);
  for (float& v : a) v = std::max(v, 0.f);
  const float grad_coef = 0.37f, loss_coef = 0.011f;
  Vec g_ref = g, g_plain = g;
  std::vector<double> loss_ref = zero_losses(batch);
  relu_backward_cpu(g_ref.data(), a.data(), t.data(), grad_coef, loss_coef, loss_ref.data(), per_item, batch);
  relu_backward_cpu(g_plain.data(), a.data(), nullptr, 0.f, 0.f, nullptr, per_item, batch);

  Dev<float> gb(g), ab(a), tb(t), gb2(g);
  Dev<double> lb(zero_losses(batch));
  launch_relu_backward(gb.p, ab.p, tb.p, grad_coef, loss_coef, lb.p, per_item, batch, 0);
  expect_close("relu_backward + content", gb.get(), g_ref, kReluBackwardTolerance);
  expect_losses("content loss", lb.get(), loss_ref, batch, kContentSlot, kContentLossTolerance);
  launch_relu_backward(gb2.p, ab.p, nullptr, 0.f, 0.f, lb.p, per_item, batch, 0);
  expect_close("relu_backward (mask only)", gb2.get(), g_plain, 0);
}

static void check_style_gram_diff(const Size& s) {
  const int batch = s.batch, c = s.channels;
  const size_t per = size_t(c) * c;
  Vec gram = random_vec(batch * per, 8), target = random_vec(batch * per, 9), ref = gram;
  const float loss_coef = 0.2f / (4.f * c * c), grad_coef = 3.5f;
  std::vector<double> loss_ref = zero_losses(batch);
  style_gram_diff_cpu(ref.data(), target.data(), c, batch, loss_coef, grad_coef, loss_ref.data());

  Dev<float> gb(gram), tb(target);
  Dev<double> lb(zero_losses(batch));
  launch_style_gram_diff(gb.p, tb.p, c, batch, loss_coef, grad_coef, lb.p, 0);
  expect_close("style_gram_diff", gb.get(), ref, kStyleGramDiffTolerance);
  expect_losses("style loss", lb.get(), loss_ref, batch, kStyleSlot, kStyleLossTolerance);
}

static void check_tv_loss(const Size& s) {
  const int batch = s.batch, h = s.height, w = s.width;
  const size_t n = size_t(batch) * h * w * 3;
  Vec x = random_vec(n, 10, -50.f, 50.f), g = random_vec(n, 11), ref = g;
  const float coef = 0.25f;
  std::vector<double> loss_ref = zero_losses(batch);
  tv_loss_grad_cpu(x.data(), ref.data(), batch, h, w, coef, loss_ref.data());

  Dev<float> xb(x), gb(g);
  Dev<double> lb(zero_losses(batch));
  launch_tv_loss_grad(xb.p, gb.p, batch, h, w, coef, lb.p, 0);
  expect_close("tv_loss_grad", gb.get(), ref, kTvGradientTolerance);
  expect_losses("tv loss", lb.get(), loss_ref, batch, kTvSlot, kTvLossTolerance);
}

// Weights of every kind: 0 (skipped), 1, and between.
static void check_temporal_loss(const Size& s) {
  const int batch = s.batch, h = s.height, w = s.width;
  const size_t pixels = size_t(batch) * h * w, n = pixels * 3;
  Vec x = random_vec(n, 16, -50.f, 50.f), target = random_vec(n, 17, -50.f, 50.f), g = random_vec(n, 18), ref = g;
  Vec weights = random_vec(pixels, 19, -0.5f, 1.5f);
  for (float& c : weights) c = std::min(1.f, std::max(0.f, c));
  const float coef = 3.5f;
  std::vector<double> loss_ref = zero_losses(batch);
  temporal_loss_grad_cpu(x.data(), target.data(), weights.data(), ref.data(), batch, h, w, coef, loss_ref.data());

  Dev<float> xb(x), tb(target), cb(weights), gb(g);
  Dev<double> lb(zero_losses(batch));
  launch_temporal_loss_grad(xb.p, tb.p, cb.p, gb.p, batch, h, w, coef, lb.p, 0);
  expect_close("temporal_loss_grad", gb.get(), ref, kTemporalGradientTolerance);
  expect_losses("temporal loss", lb.get(), loss_ref, batch, kTemporalSlot, kTemporalLossTolerance);
}

// Masks of every kind (0, 1, between; masked_content skips 0): rows scaled
// out of place and in place, and the weighted content term of each item.
static void check_masks(const Size& s) {
  const int batch = s.batch, c = s.channels;
  const size_t positions = size_t(s.height) * s.width, n = size_t(batch) * positions * c;
  Vec a = random_vec(n, 20, -3.f, 3.f), target = random_vec(n, 21, -3.f, 3.f), g = random_vec(n, 22), ref = g;
  Vec m = random_vec(size_t(batch) * positions, 23, -0.5f, 1.5f);
  for (float& w : m) w = std::min(1.f, std::max(0.f, w));
  Vec rows(positions * c), twice(positions * c);
  mask_rows_cpu(rows.data(), a.data(), m.data(), positions, c);
  mask_rows_cpu(twice.data(), rows.data(), m.data(), positions, c);
  const float grad_coef = 0.75f, loss_coef = 0.125f;
  std::vector<double> loss_ref = zero_losses(batch);
  masked_content_cpu(ref.data(), a.data(), target.data(), m.data(), positions, c, batch, grad_coef, loss_coef,
                     loss_ref.data());

  Dev<float> ab(a), tb(target), mb(m), gb(g), out(Vec(positions * c));
  Dev<double> lb(zero_losses(batch));
  launch_mask_rows(out.p, ab.p, mb.p, positions, c, 0);
  expect_close("mask_rows", out.get(), rows, kMaskRowsTolerance);
  launch_mask_rows(out.p, out.p, mb.p, positions, c, 0);
  expect_close("mask_rows (in place)", out.get(), twice, kMaskRowsTolerance);
  launch_masked_content(gb.p, ab.p, tb.p, mb.p, positions, c, batch, grad_coef, loss_coef, lb.p, 0);
  expect_close("masked_content", gb.get(), ref, kMaskedContentTolerance);
  expect_losses("masked content loss", lb.get(), loss_ref, batch, kContentSlot, kMaskedContentLossTolerance);
}

// Two steps with the same gradient: the kernel must read steps[0], then,
// after advance_step, steps[1].
static void check_adam(const Size& s) {
  const size_t n = s.elements();
  Vec x = random_vec(n, 12, -100.f, 100.f), m = random_vec(n, 13), v = random_vec(n, 14, 0.f, 2.f),
      g = random_vec(n, 15);
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const Vec steps = {0.5f, 2.0f, 1.25f};
  Vec xr = x, mr = m, vr = v;
  int step = 0;
  for (int k = 0; k < 2; k++) {
    adam_cpu(xr.data(), mr.data(), vr.data(), g.data(), n, b1, b2, eps, steps.data(), &step);
    advance_step_cpu(&step);
  }
  Dev<float> xb(x), mb(m), vb(v), gb(g), sb(steps);
  Dev<int> ib(std::vector<int>{0});
  for (int k = 0; k < 2; k++) {
    launch_adam(xb.p, mb.p, vb.p, gb.p, n, b1, b2, eps, sb.p, ib.p, 0);
    launch_advance_step(ib.p, 0);
  }
  expect_close("adam x", xb.get(), xr, kAdamTolerance);
  expect_close("adam m", mb.get(), mr, kAdamTolerance);
  expect_close("adam v", vb.get(), vr, kAdamTolerance);
  const int index = ib.get()[0];
  if (index != 2 || step != 2) {
    std::printf("advance_step FAIL (index %d, reference %d, both should be 2)\n", index, step);
    failures++;
  }
}

struct Family {
  const char* name;
  void (*check)(const Size&);
  std::vector<Size> sizes;
};

static const std::vector<Family>& families() {
  static const std::vector<Family> table = {
      {"bias_relu",
       check_bias_relu,
       {
           {1, 3 * 7, 5, 64}, {1, 1, 1, 4}, {1, 1050001, 1, 4},  // 1050001 float4s > 4096 * 256
       }},
      {"pool (avg)",
       check_avg_pooling,
       {
           {2, 7, 9, 8},   // odd both ways: partial last row and column
           {1, 6, 5, 64},  // even rows, odd columns
           {1, 1, 1, 4},   // a single partial window
           {1, 7, 1, 4},   // 1-wide
           {1, 1, 9, 4},   // 1-high
       }},
      {"pool (max)",
       check_max_pooling,
       {
           {2, 7, 9, 8},
           {1, 6, 5, 64},
           {1, 1, 1, 4},
           {1, 7, 1, 4},
           {1, 1, 9, 4},
           {1, 1025, 1025, 16},  // 1.05M float4 outputs > 4096 * 256
       }},
      {"relu_backward",
       check_relu_backward,
       {
           {3, 9, 11, 64}, {1, 1, 1, 4}, {2, 1024 * 256 + 3, 1, 4},  // > 1024 blocks of 256 float4s per item
       }},
      {"style_gram_diff",
       check_style_gram_diff,
       {
           {2, 1, 1, 128}, {1, 1, 1, 1}, {1, 1, 1, 263},  // 263^2 > 256 blocks of 256
       }},
      {"tv_loss",
       check_tv_loss,
       {
           {2, 13, 10, 3}, {1, 1, 7, 3}, {1, 9, 1, 3}, {1, 513, 515, 3},  // > 1024 blocks of 256 pixels
       }},
      {"temporal_loss",
       check_temporal_loss,
       {
           {2, 13, 10, 3}, {1, 1, 1, 3}, {1, 513, 515, 3},  // > 1024 blocks of 256 pixels
       }},
      {"masks",
       check_masks,
       {
           {2, 7, 9, 64}, {1, 1, 1, 3}, {1, 1025, 1025, 1},  // 1.05M rows > 4096 blocks of 256; > 1024 per item
       }},
      {"adam",
       check_adam,
       {
           {1, 1000, 1, 1}, {1, 1, 1, 1}, {1, 1100003, 1, 1},  // > 4096 * 256
       }},
  };
  return table;
}

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("kernel_test: no GPU, nothing to test\n");
    return 3;
  }
  // Below 2^31 elements the kernels index in 32 bits; at 2^31, 64.
  if (index_bits(1000) != 32 || index_bits((size_t(1) << 31) - 1) != 32 || index_bits(size_t(1) << 31) != 64) {
    std::printf("index width FAIL (32-bit below 2^31 elements, 64-bit from there)\n");
    failures++;
  }
  for (bool wide : {false, true}) {
    force_64bit_indices(wide);
    for (const Family& family : families()) {
      std::printf("-- %s, %s indices\n", family.name, wide ? "64-bit (forced)" : "32-bit");
      for (const Size& size : family.sizes) family.check(size);
    }
  }
  force_64bit_indices(false);
  std::printf(failures ? "kernel_test: %d FAILED\n" : "kernel_test: all kernels match their CPU references\n",
              failures);
  return failures ? 1 : 0;
}
