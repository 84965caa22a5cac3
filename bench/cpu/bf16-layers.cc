// Micro-benchmark behind the cpu engine's per-layer choice in bf16
// (bench/RESULTS.md, "bf16"): for each VGG-19 convolution conv1_1..conv5_1 at
// a given size, forward (bias+ReLU post-op) and backward-data times of
//   fp32 direct on NHWC (the fp32 engine's direct layers),
//   fp32 Winograd on nChw16c (the fp32 engine's Winograd layers),
//   bf16 direct on NHWC (f32 accumulation; diff_src in f32, as the engine asks),
// and the reorders a Winograd layer would cost inside a bf16 net (its bf16
// NHWC input to f32 nChw16c and its f32 output back, the same for the
// gradients). Times are the minimum of `reps` runs, the variants interleaved
// (the machine may be shared: the minimum is the least disturbed run). Also
// the bf16 results' relative L2 difference from fp32 direct.
//   g++ -O2 -std=c++17 -fopenmp bench/cpu/bf16-layers.cc -ldnnl -o /tmp/bf16-layers && /tmp/bf16-layers 300 400 [reps]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double once(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static void fill(memory& m, unsigned seed, float lo) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, 1.f);
  float* p = static_cast<float*>(m.get_data_handle());
  for (size_t i = 0; i < m.get_desc().get_size() / 4; i++) p[i] = u(g);
}

static std::vector<float> read_nhwc(engine& eng, stream& s, memory& m, const memory::dims& dims) {
  memory out({dims, dt::f32, tag::nhwc}, eng);
  reorder(m, out).execute(s, m, out);
  s.wait();
  const float* p = static_cast<const float*>(out.get_data_handle());
  return {p, p + out.get_desc().get_size() / 4};
}

static double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.empty() || b.empty()) return NAN;
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); i++) d += double(a[i] - b[i]) * (a[i] - b[i]), n += double(b[i]) * b[i];
  return std::sqrt(d / n);
}

// One convolution variant, ready to run: forward and backward-data.
struct Variant {
  std::string impl_f = "-", impl_b = "-";
  std::function<void()> fwd, bwd;
  double tf = INFINITY, tb = INFINITY;
  std::vector<float> out, grad;
  bool ok = false;
};

static Variant make(engine& eng, stream& s, int ci, int co, int h, int w, algorithm alg, dt d, tag act, memory& x_n,
                    memory& dy_n, memory& w_user, memory& b) {
  Variant v;
  const memory::dims one{1, 1};
  tag in_tag = ci % 16 ? tag::nhwc : act;
  memory::desc src({1, ci, h, w}, d, in_tag), dst({1, co, h, w}, d, act);
  memory::desc diff_src({1, ci, h, w}, dt::f32, in_tag);  // the engine keeps gradients in f32
  memory::desc wei({co, ci, 3, 3}, d, tag::any), bias({co}, dt::f32, tag::x);
  post_ops po;
  po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  primitive_attr attr;
  attr.set_post_ops(po);
  try {
    convolution_forward::primitive_desc fwd({prop_kind::forward_training, alg, src, wei, bias, dst, one, one, one}, attr,
                                            eng);
    convolution_backward_data::primitive_desc bwd({alg, diff_src, wei, dst, one, one, one}, eng, fwd);
    v.impl_f = fwd.impl_info_str();
    v.impl_b = bwd.impl_info_str();
    auto x = std::make_shared<memory>(fwd.src_desc(), eng), y = std::make_shared<memory>(fwd.dst_desc(), eng),
         wf = std::make_shared<memory>(fwd.weights_desc(), eng), dy = std::make_shared<memory>(bwd.diff_dst_desc(), eng),
         dx = std::make_shared<memory>(bwd.diff_src_desc(), eng), wb = std::make_shared<memory>(bwd.weights_desc(), eng);
    reorder(x_n, *x).execute(s, x_n, *x);
    reorder(w_user, *wf).execute(s, w_user, *wf);
    reorder(dy_n, *dy).execute(s, dy_n, *dy);
    reorder(w_user, *wb).execute(s, w_user, *wb);
    s.wait();
    auto f = std::make_shared<convolution_forward>(fwd);
    auto k = std::make_shared<convolution_backward_data>(bwd);
    memory bb = b;
    v.fwd = [=, &s] {
      f->execute(s, {{DNNL_ARG_SRC, *x}, {DNNL_ARG_WEIGHTS, *wf}, {DNNL_ARG_BIAS, bb}, {DNNL_ARG_DST, *y}});
      s.wait();
    };
    v.bwd = [=, &s] {
      k->execute(s, {{DNNL_ARG_DIFF_DST, *dy}, {DNNL_ARG_WEIGHTS, *wb}, {DNNL_ARG_DIFF_SRC, *dx}});
      s.wait();
    };
    v.fwd();
    v.bwd();
    v.out = read_nhwc(eng, s, *y, {1, co, h, w});
    v.grad = read_nhwc(eng, s, *dx, {1, ci, h, w});
    v.ok = true;
  } catch (const dnnl::error&) {
  }
  return v;
}

// A reorder between two descs, as a timed closure.
static std::function<void()> conversion(engine& eng, stream& s, const memory::desc& from, const memory::desc& to) {
  auto a = std::make_shared<memory>(from, eng), b = std::make_shared<memory>(to, eng);
  std::memset(a->get_data_handle(), 0, from.get_size());
  auto r = std::make_shared<reorder>(*a, *b);
  return [=, &s] {
    r->execute(s, *a, *b);
    s.wait();
  };
}

int main(int argc, char** argv) {
  const int H = argc > 2 ? std::atoi(argv[1]) : 300, W = argc > 2 ? std::atoi(argv[2]) : 400;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const int chans[13][2] = {{3, 64},    {64, 64},   {64, 128},  {128, 128}, {128, 256}, {256, 256}, {256, 256},
                            {256, 256}, {256, 512}, {512, 512}, {512, 512}, {512, 512}, {512, 512}};
  const char* names[13] = {"conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                           "conv3_4", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"};
  const int pool_after[13] = {0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0};
  std::printf("ms per conv at %dx%d (min of %d), fwd / bwd-data: fp32 direct NHWC | fp32 Winograd nChw16c | "
              "Winograd's reorders in a bf16 net (fwd, bwd) | bf16 direct NHWC | bf16 rel. L2 vs fp32 (out, grad) | "
              "bf16 impl\n",
              H, W, reps);
  double sum[4][2] = {};
  int h = H, w = W;
  for (int l = 0; l < 13; l++) {
    const int ci = chans[l][0], co = chans[l][1];
    memory x_n({{1, ci, h, w}, dt::f32, tag::nhwc}, eng), dy_n({{1, co, h, w}, dt::f32, tag::nhwc}, eng);
    memory w_user({{co, ci, 3, 3}, dt::f32, tag::oihw}, eng), b({{co}, dt::f32, tag::x}, eng);
    fill(x_n, 1, 0.f), fill(dy_n, 2, -1.f), fill(w_user, 3, -0.1f), fill(b, 4, -0.1f);
    Variant f32 = make(eng, s, ci, co, h, w, algorithm::convolution_direct, dt::f32, tag::nhwc, x_n, dy_n, w_user, b);
    Variant wino = ci % 16 ? Variant{}
                           : make(eng, s, ci, co, h, w, algorithm::convolution_winograd, dt::f32, tag::nChw16c, x_n,
                                  dy_n, w_user, b);
    Variant bf = make(eng, s, ci, co, h, w, algorithm::convolution_direct, dt::bf16, tag::nhwc, x_n, dy_n, w_user, b);
    // Winograd inside a bf16 net: bf16 NHWC input -> f32 blocked, f32 blocked output -> bf16 NHWC
    // (forward); f32 gradient (NHWC, as the engine keeps it) -> blocked, blocked diff_src -> NHWC.
    std::function<void()> conv_f, conv_b;
    double tcf = INFINITY, tcb = INFINITY;
    if (wino.ok) {
      auto a = conversion(eng, s, {{1, ci, h, w}, dt::bf16, tag::nhwc}, {{1, ci, h, w}, dt::f32, tag::nChw16c});
      auto c = conversion(eng, s, {{1, co, h, w}, dt::f32, tag::nChw16c}, {{1, co, h, w}, dt::bf16, tag::nhwc});
      auto d = conversion(eng, s, {{1, co, h, w}, dt::f32, tag::nhwc}, {{1, co, h, w}, dt::f32, tag::nChw16c});
      auto e = conversion(eng, s, {{1, ci, h, w}, dt::f32, tag::nChw16c}, {{1, ci, h, w}, dt::f32, tag::nhwc});
      conv_f = [=] { a(), c(); };
      conv_b = [=] { d(), e(); };
    }
    for (int r = 0; r < reps; r++) {
      for (Variant* v : {&f32, &wino, &bf}) {
        if (!v->ok) continue;
        v->tf = std::min(v->tf, once(v->fwd));
        v->tb = std::min(v->tb, once(v->bwd));
      }
      if (conv_f) tcf = std::min(tcf, once(conv_f)), tcb = std::min(tcb, once(conv_b));
    }
    auto ms = [](double t) { return std::isfinite(t) ? t * 1e3 : NAN; };
    std::printf("%-7s %3d->%3d %3dx%3d  %6.1f / %6.1f | %6.1f / %6.1f | %5.1f, %5.1f | %6.1f / %6.1f | %.1e, %.1e | %s %s\n",
                names[l], ci, co, h, w, ms(f32.tf), ms(f32.tb), ms(wino.tf), ms(wino.tb), ms(tcf), ms(tcb), ms(bf.tf),
                ms(bf.tb), rel_l2(bf.out, f32.out), rel_l2(bf.grad, f32.grad), bf.impl_f.c_str(), bf.impl_b.c_str());
    const double best_wino_f = wino.ok ? wino.tf : f32.tf, best_wino_b = wino.ok ? wino.tb : f32.tb;
    sum[0][0] += f32.tf, sum[0][1] += f32.tb;
    sum[1][0] += best_wino_f, sum[1][1] += best_wino_b;
    sum[2][0] += wino.ok ? std::min(bf.tf, wino.tf + tcf) : bf.tf;
    sum[2][1] += wino.ok ? std::min(bf.tb, wino.tb + tcb) : bf.tb;
    sum[3][0] += bf.tf, sum[3][1] += bf.tb;
    if (pool_after[l]) h = (h + 1) / 2, w = (w + 1) / 2;
  }
  std::printf("sum, ms fwd / bwd: fp32 direct %.1f / %.1f; fp32 with Winograd where it has it %.1f / %.1f; "
              "bf16 with Winograd where it wins after its reorders %.1f / %.1f; bf16 direct only %.1f / %.1f\n",
              sum[0][0] * 1e3, sum[0][1] * 1e3, sum[1][0] * 1e3, sum[1][1] * 1e3, sum[2][0] * 1e3, sum[2][1] * 1e3,
              sum[3][0] * 1e3, sum[3][1] * 1e3);
}
