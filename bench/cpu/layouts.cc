// Micro-benchmark behind two choices of the CPU engine (bench/RESULTS.md):
//  1. activation layout: NHWC (what the engine uses) vs oneDNN's blocked
//     nChw16c, for the VGG-19 convolutions at 300x400, forward (bias+ReLU
//     post-op) and backward-data;
//  2. Gram matrix A^T A (N x C, NHWC) through oneDNN's sgemm vs OpenBLAS
//     cblas_sgemm and cblas_ssyrk, at the style layers' shapes.
// Build and run (from the repository root):
//   g++ -O2 -std=c++17 -fopenmp bench/cpu/layouts.cc -ldnnl -lopenblas -o /tmp/layouts && /tmp/layouts
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <dnnl.hpp>
#include <functional>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double seconds(const std::function<void()>& f, int reps) {
  f();  // warm-up (JIT, first touch)
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; i++) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

struct Shape {
  int c_in, c_out, h, w;
};

// Seconds for forward and backward-data of one conv with activations in `act`.
static std::pair<double, double> conv_times(engine& eng, stream& s, const Shape& sh, tag act) {
  const memory::dims one{1, 1};
  memory::desc src({1, sh.c_in, sh.h, sh.w}, dt::f32, act), dst({1, sh.c_out, sh.h, sh.w}, dt::f32, act);
  // conv1_1's 3 input channels cannot be blocked by 16 (mixing NHWC in and
  // blocked out sends oneDNN 2.6 to its reference kernels): NHWC in both runs.
  if (sh.c_in % 16) src = memory::desc({1, sh.c_in, sh.h, sh.w}, dt::f32, tag::nhwc), dst = memory::desc({1, sh.c_out, sh.h, sh.w}, dt::f32, tag::nhwc);
  memory::desc wei({sh.c_out, sh.c_in, 3, 3}, dt::f32, tag::any), bias({sh.c_out}, dt::f32, tag::x);
  post_ops po;
  po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  primitive_attr attr;
  attr.set_post_ops(po);
  convolution_forward::primitive_desc fwd(
      {prop_kind::forward_training, algorithm::convolution_direct, src, wei, bias, dst, one, one, one}, attr, eng);
  convolution_backward_data::primitive_desc bwd({algorithm::convolution_direct, src, wei, dst, one, one, one}, eng, fwd);
  memory m_src(fwd.src_desc(), eng), m_dst(fwd.dst_desc(), eng), m_w(fwd.weights_desc(), eng), m_b(bias, eng),
      m_wb(bwd.weights_desc(), eng), m_dsrc(bwd.diff_src_desc(), eng), m_ddst(bwd.diff_dst_desc(), eng);
  convolution_forward f(fwd);
  convolution_backward_data b(bwd);
  double tf = seconds([&] { f.execute(s, {{DNNL_ARG_SRC, m_src}, {DNNL_ARG_WEIGHTS, m_w}, {DNNL_ARG_BIAS, m_b}, {DNNL_ARG_DST, m_dst}}); s.wait(); }, 3);
  double tb = seconds([&] { b.execute(s, {{DNNL_ARG_DIFF_DST, m_ddst}, {DNNL_ARG_WEIGHTS, m_wb}, {DNNL_ARG_DIFF_SRC, m_dsrc}}); s.wait(); }, 3);
  return {tf, tb};
}

// Each thread takes a slice of the N rows (single-threaded sgemm inside the
// parallel region), then the partial C x C products are summed.
static void gram_split(const float* a, int n, int c, float* g, float* part) {
#pragma omp parallel
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int begin = int(long(n) * t / nt), end = int(long(n) * (t + 1) / nt);
    dnnl::sgemm('T', 'N', c, c, end - begin, 1.f / n, a + size_t(begin) * c, c, a + size_t(begin) * c, c, 0.f,
                part + size_t(t) * c * c, c);
#pragma omp barrier
#pragma omp for
    for (int i = 0; i < c * c; i++) {
      float sum = 0;
      for (int k = 0; k < nt; k++) sum += part[size_t(k) * c * c + i];
      g[i] = sum;
    }
  }
}

int main() {
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  // conv1_1 .. conv5_1 at 300 x 400.
  const std::vector<Shape> layers = {{3, 64, 300, 400},   {64, 64, 300, 400},   {64, 128, 150, 200},  {128, 128, 150, 200},
                                     {128, 256, 75, 100}, {256, 256, 75, 100},  {256, 256, 75, 100},  {256, 256, 75, 100},
                                     {256, 512, 38, 50},  {512, 512, 38, 50},   {512, 512, 38, 50},   {512, 512, 38, 50},
                                     {512, 512, 19, 25}};
  for (tag act : {tag::nhwc, tag::nChw16c}) {
    double flops = 0, tf = 0, tb = 0;
    for (const auto& l : layers) {
      auto [f, b] = conv_times(eng, s, l, act);
      tf += f;
      tb += b;
      flops += 2.0 * l.h * l.w * l.c_in * l.c_out * 9;
    }
    std::printf("%-8s forward %.3f s (%.0f GFLOP/s)  backward-data %.3f s (%.0f GFLOP/s)  total %.3f s\n",
                act == tag::nhwc ? "nhwc" : "nChw16c", tf, flops / tf / 1e9, tb, flops / tb / 1e9, tf + tb);
  }

  // Gram of the default style layers at 300x400: N x C.
  const std::vector<std::pair<int, int>> grams = {{120000, 64}, {30000, 128}, {7500, 256}, {1900, 512}, {475, 512}};
  double t_dnnl = 0, t_blas = 0, t_syrk = 0, t_split = 0, flops = 0;
  for (auto [n, c] : grams) {
    std::vector<float> a(size_t(n) * c, 0.5f), g(size_t(c) * c);
    t_dnnl += seconds([&] { dnnl::sgemm('T', 'N', c, c, n, 1.f / n, a.data(), c, a.data(), c, 0.f, g.data(), c); }, 5);
    t_blas += seconds([&] { cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, c, n, 1.f / n, a.data(), c, a.data(), c, 0.f, g.data(), c); }, 5);
    t_syrk += seconds([&] { cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, c, n, 1.f / n, a.data(), c, 0.f, g.data(), c); }, 5);
    std::vector<float> part(size_t(c) * c * 64);
    t_split += seconds([&] { gram_split(a.data(), n, c, g.data(), part.data()); }, 5);
    flops += 2.0 * n * c * c;
  }
  std::printf("gram (5 style layers, %.2f GFLOP): dnnl_sgemm %.2f ms (%.0f GFLOP/s)  openblas sgemm %.2f ms  openblas ssyrk %.2f ms  split-N dnnl_sgemm %.2f ms (%.0f GFLOP/s)\n",
              flops / 1e9, t_dnnl * 1e3, flops / t_dnnl / 1e9, t_blas * 1e3, t_syrk * 1e3, t_split * 1e3, flops / t_split / 1e9);
}
