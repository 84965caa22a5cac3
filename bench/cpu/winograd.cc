// Micro-benchmark behind the CPU engine's per-layer Winograd choice
// (bench/RESULTS.md): for each VGG-19 convolution conv1_1..conv5_1 at a given
// size, forward (bias+ReLU post-op) and backward-data time of
//   direct on NHWC, direct on nChw16c, Winograd on NHWC (if oneDNN has it),
//   Winograd on nChw16c, and one NHWC <-> nChw16c reorder of src and dst,
// plus the Winograd results' relative L2 difference from direct.
//   g++ -O2 -std=c++17 -fopenmp bench/cpu/winograd.cc -ldnnl -o /tmp/winograd && /tmp/winograd 300 400
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <dnnl.hpp>
#include <functional>
#include <random>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double seconds(const std::function<void()>& f, int reps) {
  f();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; i++) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

static void fill(memory& m, unsigned seed, float lo) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, 1.f);
  float* p = static_cast<float*>(m.get_data_handle());
  for (size_t i = 0; i < m.get_desc().get_size() / 4; i++) p[i] = u(g);
}

struct Run {
  double fwd = NAN, bwd = NAN;
  std::vector<float> out, grad;  // NHWC results, for the error
  const char* impl_f = "-";
  const char* impl_b = "-";
};

// One (algorithm, layout) pair; times stay NaN where oneDNN has no implementation.
static Run run(engine& eng, stream& s, int ci, int co, int h, int w, algorithm alg, tag act) {
  Run r;
  const memory::dims one{1, 1};
  memory::desc src({1, ci, h, w}, dt::f32, act), dst({1, co, h, w}, dt::f32, act);
  memory::desc wei({co, ci, 3, 3}, dt::f32, tag::any), bias({co}, dt::f32, tag::x);
  post_ops po;
  po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  primitive_attr attr;
  attr.set_post_ops(po);
  memory::desc src_n({1, ci, h, w}, dt::f32, tag::nhwc), dst_n({1, co, h, w}, dt::f32, tag::nhwc);
  memory x_n(src_n, eng), dy_n(dst_n, eng), w_user({{co, ci, 3, 3}, dt::f32, tag::oihw}, eng), b(bias, eng);
  fill(x_n, 1, -1.f), fill(dy_n, 2, -1.f), fill(w_user, 3, -0.1f), fill(b, 4, -0.1f);
  try {
    convolution_forward::primitive_desc fwd({prop_kind::forward_training, alg, src, wei, bias, dst, one, one, one}, attr, eng);
    r.impl_f = fwd.impl_info_str();
    memory x(fwd.src_desc(), eng), y(fwd.dst_desc(), eng), wf(fwd.weights_desc(), eng);
    reorder(x_n, x).execute(s, x_n, x);
    reorder(w_user, wf).execute(s, w_user, wf);
    convolution_forward f(fwd);
    r.fwd = seconds([&] { f.execute(s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, wf}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, y}}); s.wait(); }, 3);
    memory y_n(dst_n, eng);
    reorder(y, y_n).execute(s, y, y_n);
    s.wait();
    r.out.assign((float*)y_n.get_data_handle(), (float*)y_n.get_data_handle() + size_t(co) * h * w);
    try {
      convolution_backward_data::primitive_desc bwd({alg, src, wei, dst, one, one, one}, eng, fwd);
      r.impl_b = bwd.impl_info_str();
      memory dy(bwd.diff_dst_desc(), eng), dx(bwd.diff_src_desc(), eng), wb(bwd.weights_desc(), eng);
      reorder(dy_n, dy).execute(s, dy_n, dy);
      reorder(w_user, wb).execute(s, w_user, wb);
      convolution_backward_data bk(bwd);
      r.bwd = seconds([&] { bk.execute(s, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, wb}, {DNNL_ARG_DIFF_SRC, dx}}); s.wait(); }, 3);
      memory dx_n(src_n, eng);
      reorder(dx, dx_n).execute(s, dx, dx_n);
      s.wait();
      r.grad.assign((float*)dx_n.get_data_handle(), (float*)dx_n.get_data_handle() + size_t(ci) * h * w);
    } catch (const dnnl::error&) {
    }
  } catch (const dnnl::error&) {
  }
  return r;
}

static double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.empty() || b.empty()) return NAN;
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); i++) d += double(a[i] - b[i]) * (a[i] - b[i]), n += double(b[i]) * b[i];
  return std::sqrt(d / n);
}

static double reorder_time(engine& eng, stream& s, int c, int h, int w) {
  memory a({{1, c, h, w}, dt::f32, tag::nhwc}, eng), b({{1, c, h, w}, dt::f32, tag::nChw16c}, eng);
  fill(a, 5, 0.f);
  reorder r(a, b);
  return seconds([&] { r.execute(s, a, b); s.wait(); }, 5);
}

int main(int argc, char** argv) {
  const int H = argc > 2 ? std::atoi(argv[1]) : 300, W = argc > 2 ? std::atoi(argv[2]) : 400;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const int chans[13][2] = {{3, 64}, {64, 64}, {64, 128}, {128, 128}, {128, 256}, {256, 256}, {256, 256},
                            {256, 256}, {256, 512}, {512, 512}, {512, 512}, {512, 512}, {512, 512}};
  const int pool_after[13] = {0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0};
  int h = H, w = W;
  std::printf("ms per conv at %dx%d: fwd/bwd  direct-nhwc | direct-blocked | wino-nhwc | wino-blocked | reorder src,dst | wino err fwd,bwd\n", H, W);
  for (int l = 0; l < 13; l++) {
    const int ci = chans[l][0], co = chans[l][1];
    Run dn = run(eng, s, ci, co, h, w, algorithm::convolution_direct, tag::nhwc);
    Run db = ci % 16 ? Run{} : run(eng, s, ci, co, h, w, algorithm::convolution_direct, tag::nChw16c);
    Run wn = run(eng, s, ci, co, h, w, algorithm::convolution_winograd, tag::nhwc);
    Run wb = ci % 16 ? Run{} : run(eng, s, ci, co, h, w, algorithm::convolution_winograd, tag::nChw16c);
    double rs = ci % 16 ? NAN : reorder_time(eng, s, ci, h, w), rd = reorder_time(eng, s, co, h, w);
    std::printf("%2d %3d->%3d %3dx%3d  %6.1f/%6.1f | %6.1f/%6.1f | %6.1f/%6.1f | %6.1f/%6.1f | %5.1f,%5.1f | %.1e,%.1e  %s %s\n", l, ci, co, h, w,
                dn.fwd * 1e3, dn.bwd * 1e3, db.fwd * 1e3, db.bwd * 1e3, wn.fwd * 1e3, wn.bwd * 1e3, wb.fwd * 1e3,
                wb.bwd * 1e3, rs * 1e3, rd * 1e3, rel_l2(wb.out, dn.out), rel_l2(wb.grad, dn.grad), wb.impl_f, wb.impl_b);
    if (pool_after[l]) h = (h + 1) / 2, w = (w + 1) / 2;
  }
}
