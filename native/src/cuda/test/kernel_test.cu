// Self-test of the engine's own kernels against straightforward CPU
// references (llm.c style), on odd sizes that exercise SAME pooling's partial
// windows, 1-wide maps, and sizes large enough that the grid-stride loops go
// round more than once; every kernel through both index widths (32-bit, and
// the 64-bit path forced). The references follow the kernels' float steps
// (a difference is a float subtraction, its square summed in double), so the
// loss sums differ only in the order of their double additions: hence the
// 1e-9 tolerance. Needs no cuDNN or cuBLAS. Built for a GPU
// (bench/gpu/prepare.sh, run first by bench/gpu/run.sh so a kernel bug shows
// up before the end-to-end parity tests) and for the CPU stand-in (CI).
// Exit code 0 when every kernel matches.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/kernels.h"

using namespace nst::cuda;
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

// TF SAME 2x2/2 window of output o on an axis of n: [2o, min(2o+2, n)).
static int win_end(int o, int n) { return std::min(2 * o + 2, n); }

static void test_pooling(bool max_pool, int batch, int h, int w, int c) {
  const int ho = (h + 1) / 2, wo = (w + 1) / 2;
  Vec in = random_vec(size_t(batch) * h * w * c, 1);
  for (size_t i = 0; i < in.size(); i += 3) in[i] = std::max(in[i], 0.f);  // ReLU-like zeros for the mask
  Vec d_out = random_vec(size_t(batch) * ho * wo * c, 2);
  Vec out_ref(d_out.size()), d_in_ref(in.size(), 0.f);
  auto at = [&](int b, int y, int x, int k) { return ((size_t(b) * h + y) * w + x) * c + k; };
  for (int b = 0; b < batch; b++)
    for (int oy = 0; oy < ho; oy++)
      for (int ox = 0; ox < wo; ox++)
        for (int k = 0; k < c; k++) {
          size_t o = ((size_t(b) * ho + oy) * wo + ox) * c + k;
          float acc = max_pool ? -INFINITY : 0.f;
          int count = 0;
          size_t arg = 0;
          for (int y = 2 * oy; y < win_end(oy, h); y++)
            for (int x = 2 * ox; x < win_end(ox, w); x++) {
              float v = in[at(b, y, x, k)];
              if (max_pool && v > acc) {
                acc = v;
                arg = at(b, y, x, k);
              }
              if (!max_pool) acc += v;
              count++;
            }
          out_ref[o] = max_pool ? acc : acc / count;
          // Backward by scattering (the kernel gathers: an independent route).
          if (max_pool)
            d_in_ref[arg] += d_out[o];
          else
            for (int y = 2 * oy; y < win_end(oy, h); y++)
              for (int x = 2 * ox; x < win_end(ox, w); x++) d_in_ref[at(b, y, x, k)] += d_out[o] / count;
        }
  Vec d_in_masked_ref = d_in_ref;
  for (size_t i = 0; i < in.size(); i++)
    if (!(in[i] > 0.f)) d_in_masked_ref[i] = 0.f;

  Dev<float> d_in_buf(in), d_out_buf(d_out), out_buf(Vec(out_ref.size())), grad_buf(Vec(in.size()));
  launch_pool_forward(d_in_buf.p, out_buf.p, batch, h, w, c, max_pool, 0);
  expect_close(max_pool ? "pool_forward max" : "pool_forward avg", out_buf.get(), out_ref, 1e-6);
  launch_pool_backward(d_out_buf.p, d_in_buf.p, grad_buf.p, batch, h, w, c, max_pool, false, 0);
  expect_close(max_pool ? "pool_backward max" : "pool_backward avg", grad_buf.get(), d_in_ref, 1e-6);
  launch_pool_backward(d_out_buf.p, d_in_buf.p, grad_buf.p, batch, h, w, c, max_pool, true, 0);
  expect_close(max_pool ? "pool_backward max + mask" : "pool_backward avg + mask", grad_buf.get(), d_in_masked_ref,
               1e-6);
}

static void test_bias_relu(size_t pixels, int c) {
  const size_t n = pixels * c;
  Vec y = random_vec(n, 3), bias = random_vec(c, 4, -0.3f, 0.3f), ref(n);
  for (size_t i = 0; i < n; i++) ref[i] = std::max(y[i] + bias[i % c], 0.f);
  Dev<float> yb(y), bb(bias);
  launch_bias_relu(yb.p, bb.p, n, c, 0);
  expect_close("bias_relu", yb.get(), ref, 1e-7);
}

static void test_relu_backward(int batch, size_t per_item) {
  Vec g = random_vec(batch * per_item, 5), a = random_vec(batch * per_item, 6), t = random_vec(batch * per_item, 7);
  for (float& v : a) v = std::max(v, 0.f);
  const float grad_coef = 0.37f, loss_coef = 0.011f;
  Vec g_ref(g.size()), g_plain(g.size());
  std::vector<double> loss_ref(batch * kLossSlots, 0.0);
  for (int b = 0; b < batch; b++)
    for (size_t i = 0; i < per_item; i++) {
      size_t k = b * per_item + i;
      float d = a[k] - t[k];  // in float, as the kernel (and the cpu engine)
      loss_ref[b * kLossSlots + kContentSlot] += double(loss_coef) * (double(d) * d);
      g_ref[k] = a[k] > 0 ? g[k] + grad_coef * d : 0.f;
      g_plain[k] = a[k] > 0 ? g[k] : 0.f;
    }
  Dev<float> gb(g), ab(a), tb(t), gb2(g);
  Dev<double> lb(std::vector<double>(batch * kLossSlots, 0.0));
  launch_relu_backward(gb.p, ab.p, tb.p, grad_coef, loss_coef, lb.p, per_item, batch, 0);
  expect_close("relu_backward + content", gb.get(), g_ref, 1e-6);
  std::vector<double> loss = lb.get();
  for (int b = 0; b < batch; b++) {
    expect_close("content loss", loss[b * kLossSlots], loss_ref[b * kLossSlots], 1e-9);
  }
  launch_relu_backward(gb2.p, ab.p, nullptr, 0.f, 0.f, lb.p, per_item, batch, 0);
  expect_close("relu_backward (mask only)", gb2.get(), g_plain, 0);
}

static void test_style_diff(int batch, int c) {
  const size_t per = size_t(c) * c;
  Vec gram = random_vec(batch * per, 8), target = random_vec(batch * per, 9), ref(gram.size());
  const float loss_coef = 0.2f / (4.f * c * c), grad_coef = 3.5f;
  std::vector<double> loss_ref(batch, 0.0);
  for (int b = 0; b < batch; b++)
    for (size_t i = 0; i < per; i++) {
      float d = gram[b * per + i] - target[b * per + i];  // in float, as the kernel
      loss_ref[b] += double(loss_coef) * (double(d) * d);
      ref[b * per + i] = grad_coef * d;
    }
  Dev<float> gb(gram), tb(target);
  Dev<double> lb(std::vector<double>(batch * kLossSlots, 0.0));
  launch_style_gram_diff(gb.p, tb.p, c, batch, loss_coef, grad_coef, lb.p, 0);
  expect_close("style_gram_diff", gb.get(), ref, 1e-6);
  std::vector<double> loss = lb.get();
  for (int b = 0; b < batch; b++) expect_close("style loss", loss[b * kLossSlots + kStyleSlot], loss_ref[b], 1e-9);
}

static void test_tv(int batch, int h, int w) {
  const size_t per = size_t(h) * w * 3;
  Vec x = random_vec(batch * per, 10, -50.f, 50.f), g = random_vec(batch * per, 11), ref = g;
  const float coef = 0.25f;
  std::vector<double> loss_ref(batch, 0.0);
  auto idx = [&](int b, int i, int j, int c) { return b * per + (size_t(i) * w + j) * 3 + c; };
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++)
        for (int c = 0; c < 3; c++) {
          // Each pair's term d^2 contributes 2d to the later pixel, -2d to the earlier.
          if (i + 1 < h) {
            float d = x[idx(b, i + 1, j, c)] - x[idx(b, i, j, c)];  // in float, as the kernel
            loss_ref[b] += double(d) * d;
            ref[idx(b, i + 1, j, c)] += float(coef * 2 * d);
            ref[idx(b, i, j, c)] -= float(coef * 2 * d);
          }
          if (j + 1 < w) {
            float d = x[idx(b, i, j + 1, c)] - x[idx(b, i, j, c)];
            loss_ref[b] += double(d) * d;
            ref[idx(b, i, j + 1, c)] += float(coef * 2 * d);
            ref[idx(b, i, j, c)] -= float(coef * 2 * d);
          }
        }
  Dev<float> xb(x), gb(g);
  Dev<double> lb(std::vector<double>(batch * kLossSlots, 0.0));
  launch_tv_loss_grad(xb.p, gb.p, batch, h, w, coef, lb.p, 0);
  expect_close("tv_loss_grad", gb.get(), ref, 1e-5);
  std::vector<double> loss = lb.get();
  for (int b = 0; b < batch; b++) expect_close("tv loss", loss[b * kLossSlots + kTvSlot], loss_ref[b], 1e-9);
}

static void test_adam(size_t n) {
  Vec x = random_vec(n, 12, -100.f, 100.f), m = random_vec(n, 13), v = random_vec(n, 14, 0.f, 2.f),
      g = random_vec(n, 15);
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  Vec steps = {0.5f, 2.0f, 1.25f};
  // Two steps with the same gradient; the kernel must read steps[0] then steps[1].
  // In float, as the kernel, with 1 - beta rounded from double as the launcher does.
  const float omb1 = float(1.0 - double(b1)), omb2 = float(1.0 - double(b2));
  Vec xr = x, mr = m, vr = v;
  for (int s = 0; s < 2; s++)
    for (size_t i = 0; i < n; i++) {
      float mi = b1 * mr[i] + omb1 * g[i];
      float vi = b2 * vr[i] + omb2 * g[i] * g[i];
      mr[i] = mi;
      vr[i] = vi;
      xr[i] -= steps[s] * mi / (std::sqrt(vi) + eps);
    }
  Dev<float> xb(x), mb(m), vb(v), gb(g), sb(steps);
  Dev<int> ib(std::vector<int>{0});
  for (int s = 0; s < 2; s++) {
    launch_adam(xb.p, mb.p, vb.p, gb.p, n, b1, b2, eps, sb.p, ib.p, 0);
    launch_advance_step(ib.p, 0);
  }
  expect_close("adam x", xb.get(), xr, 1e-6);
  expect_close("adam m", mb.get(), mr, 1e-6);
  expect_close("adam v", vb.get(), vr, 1e-6);
  std::vector<int> index = ib.get();
  if (index[0] != 2) {
    std::printf("advance_step FAIL (index %d)\n", index[0]);
    failures++;
  }
}

// Every kernel on sizes of three kinds: small odd ones, 1-wide maps, and
// ones past the launchers' grid caps (4096 blocks of 256 threads for the
// maps, 1024 per batch item for the losses, 256 for the Grams), where each
// thread's grid-stride loop runs more than once.
static void test_all_kernels() {
  test_bias_relu(3 * 7 * 5, 64);
  test_bias_relu(1, 4);
  test_bias_relu(1050001, 4);  // 1050001 float4s > 4096 * 256
  for (bool max_pool : {false, true}) {
    test_pooling(max_pool, 2, 7, 9, 8);   // odd both ways: partial last row and column
    test_pooling(max_pool, 1, 6, 5, 64);  // even rows, odd columns
    test_pooling(max_pool, 1, 1, 1, 4);   // a single partial window
    test_pooling(max_pool, 1, 7, 1, 4);   // 1-wide
    test_pooling(max_pool, 1, 1, 9, 4);   // 1-high
  }
  test_pooling(true, 1, 1025, 1025, 16);  // 1.05M float4 outputs > 4096 * 256
  test_relu_backward(3, size_t(9) * 11 * 64);
  test_relu_backward(1, 4);
  test_relu_backward(2, size_t(1024) * 256 * 4 + 12);  // > 1024 blocks of 256 float4s per item
  test_style_diff(2, 128);
  test_style_diff(1, 1);
  test_style_diff(1, 263);  // 263^2 > 256 blocks of 256
  test_tv(2, 13, 10);
  test_tv(1, 1, 7);
  test_tv(1, 9, 1);
  test_tv(1, 513, 515);  // > 1024 blocks of 256 pixels
  test_adam(1000);
  test_adam(1);
  test_adam(1100003);  // > 4096 * 256
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
  std::printf("-- 32-bit indices\n");
  test_all_kernels();
  std::printf("-- 64-bit indices (forced)\n");
  force_64bit_indices(true);
  test_all_kernels();
  force_64bit_indices(false);
  std::printf(failures ? "kernel_test: %d FAILED\n" : "kernel_test: all kernels match their CPU references\n",
              failures);
  return failures ? 1 : 0;
}
