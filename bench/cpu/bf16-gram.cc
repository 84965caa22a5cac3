// Micro-benchmark behind the cpu engine's Gram products in bf16
// (native/src/cpu/gram.h, bench/RESULTS.md "bf16"): for each style layer's
// shape at a given size (N = pixels, C = channels), the time of the Gram
// matrix A^T A plus the style gradient A d for
//   fp32      dnnl_sgemm on float32 activations (the fp32 engine),
//   widen     the bf16 activations widened to float32 a block of rows at a
//             time, then the same sgemm (the first bf16 engine),
//   bf16      oneDNN's bf16 matmul with f32 accumulation, d split in two
//             bf16 matrices hi + lo (Bf16Gram, the engine now),
// and the relative L2 error of each against a float64 reference of the same
// bf16 activations (the error bf16 adds to the activations themselves is
// the convolutions', not the Gram's). Times are the minimum of `reps`
// interleaved runs (the machine may be shared).
//   g++ -O2 -std=c++17 -fopenmp -Inative/src bench/cpu/bf16-gram.cc native/src/cpu/gram.cc -ldnnl -o /tmp/bf16-gram
//   /tmp/bf16-gram 300 400 [reps]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "cpu/gram.h"

using nst::kernels::bf16_bits;
using nst::kernels::bf16_to_float;
using nst::kernels::float_to_bf16;

static double once(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The first bf16 engine's way: widen a block of rows, then sgemm.
constexpr size_t kScratch = size_t(1) << 20;
static void widened(const bf16_bits* a, int n, int c, float* gram_out, const float* d, float* grad, float* scratch) {
  const int block = std::max(1, int(kScratch / size_t(c)));
  for (int pass = 0; pass < 2; pass++)
    for (int row = 0; row < n; row += block) {
      const int rows = std::min(block, n - row);
      const bf16_bits* from = a + size_t(row) * c;
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < size_t(rows) * c; i++) scratch[i] = bf16_to_float(from[i]);
      if (pass == 0)
        dnnl::sgemm('T', 'N', c, c, rows, 1.f / n, scratch, c, scratch, c, row == 0 ? 0.f : 1.f, gram_out, c);
      else
        dnnl::sgemm('N', 'N', rows, c, c, 1.f, scratch, c, d, c, 1.f, grad + size_t(row) * c, c);
    }
}

static double rel_l2(const std::vector<float>& x, const std::vector<double>& ref) {
  double e = 0, r = 0;
  for (size_t i = 0; i < x.size(); i++) e += (x[i] - ref[i]) * (x[i] - ref[i]), r += ref[i] * ref[i];
  return std::sqrt(e / r);
}

int main(int argc, char** argv) {
  const int h = argc > 1 ? atoi(argv[1]) : 300, w = argc > 2 ? atoi(argv[2]) : 400, reps = argc > 3 ? atoi(argv[3]) : 5;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  // Style layers conv1_1, conv2_1, conv3_1, conv4_1, conv5_1: maps after 0..4 poolings (ceil).
  const int channels[] = {64, 128, 256, 512, 512};
  double total[3] = {0, 0, 0};
  std::printf("%dx%d, min of %d interleaved runs; Gram + gradient per layer\n", h, w, reps);
  std::printf("%-8s %8s %5s %10s %10s %10s   rel. L2 vs float64: gram fp32/widen/bf16, gradient fp32/widen/bf16\n",
              "layer", "N", "C", "fp32 ms", "widen ms", "bf16 ms");
  for (int l = 0; l < 5; l++) {
    int lh = h, lw = w;
    for (int p = 0; p < l; p++) lh = (lh + 1) / 2, lw = (lw + 1) / 2;
    const int n = lh * lw, c = channels[l];
    std::mt19937 g(l + 1);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    std::vector<bf16_bits> a16(size_t(n) * c);
    std::vector<float> a32(a16.size()), d(size_t(c) * c);
    for (size_t i = 0; i < a16.size(); i++)
      a16[i] = float_to_bf16(u(g) < 0.5f ? 0.f : 4.f * u(g)), a32[i] = bf16_to_float(a16[i]);
    for (float& x : d) x = (u(g) - 0.5f) * 1e-3f;
    // float64 references
    std::vector<double> gref(size_t(c) * c, 0.0), dref(a16.size(), 0.0);
    for (int k = 0; k < n; k++) {
      const float* row = &a32[size_t(k) * c];
      for (int i = 0; i < c; i++) {
        if (row[i] == 0.f) continue;
        for (int j = 0; j < c; j++) gref[size_t(i) * c + j] += double(row[i]) * row[j];
        for (int j = 0; j < c; j++) dref[size_t(k) * c + j] += double(row[i]) * d[size_t(i) * c + j];
      }
    }
    for (double& x : gref) x /= n;
    std::vector<float> g1(size_t(c) * c), g2(g1.size()), g3(g1.size()), r1(a16.size()), r2(a16.size()), r3(a16.size()),
        scratch(kScratch);
    nst::cpu::Bf16Gram bg(engine, n, c);
    double best[3] = {1e9, 1e9, 1e9};
    for (int r = 0; r < reps + 1; r++) {  // the first round warms up
      std::fill(r1.begin(), r1.end(), 0.f), std::fill(r2.begin(), r2.end(), 0.f), std::fill(r3.begin(), r3.end(), 0.f);
      const double t1 = once([&] {
        nst::cpu::gram(a32.data(), n, c, 1.f / n, 0.f, g1.data());
        nst::cpu::add_gram_gradient(a32.data(), n, c, d.data(), r1.data());
      });
      const double t2 = once([&] { widened(a16.data(), n, c, g2.data(), d.data(), r2.data(), scratch.data()); });
      const double t3 = once([&] {
        bg.gram(a16.data(), 1.f / n, 0.f, g3.data());
        bg.add_gradient(a16.data(), d.data(), r3.data());
      });
      if (r > 0) best[0] = std::min(best[0], t1), best[1] = std::min(best[1], t2), best[2] = std::min(best[2], t3);
    }
    for (int i = 0; i < 3; i++) total[i] += best[i];
    std::printf("conv%d_1  %8d %5d %10.2f %10.2f %10.2f   %.1e %.1e %.1e, %.1e %.1e %.1e\n", l + 1, n, c, 1e3 * best[0],
                1e3 * best[1], 1e3 * best[2], rel_l2(g1, gref), rel_l2(g2, gref), rel_l2(g3, gref), rel_l2(r1, dref),
                rel_l2(r2, dref), rel_l2(r3, dref));
  }
  std::printf("%-8s %8s %5s %10.2f %10.2f %10.2f\n", "total", "", "", 1e3 * total[0], 1e3 * total[1], 1e3 * total[2]);
}
