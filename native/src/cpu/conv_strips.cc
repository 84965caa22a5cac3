#include "conv_strips.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace nst::cpu {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

static memory::desc blocked(memory::dim n, memory::dim c, memory::dim h, memory::dim w) {
  return {{n, c, h, w}, dt::f32, tag::nChw16c};
}

StripPlan plan_strips(const dnnl::engine& engine, const dnnl::convolution_forward::primitive_desc& whole,
                      size_t whole_scratchpad, bool with_backward, const dnnl::primitive_attr& forward_attr,
                      const dnnl::primitive_attr& backward_attr) {
  const memory::dims src = whole.src_desc().dims(), dst = whole.dst_desc().dims();
  const memory::dim n = src[0], ic = src[1], h = src[2], w = src[3], oc = dst[1];
  const char* env = std::getenv("NST_CPU_STRIPS");
  if ((env && std::strcmp(env, "0") == 0) || whole_scratchpad <= kStripScratchBytes ||
      h < memory::dim(2) * kMinStripRows)
    return {};
  const memory::dims one{1, 1}, sides{0, 1};  // no padding above and below: the halo rows are the image's
  StripPlan plan;
  // The primitives of a strip of r output rows, as plan.forward[i], plan.backward[i]; their largest scratchpad.
  auto make = [&](int i, memory::dim r) {
    memory::desc any_kernel({oc, ic, 3, 3}, dt::f32, tag::any);
    dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_winograd,
                                       blocked(n, ic, r + 2, w), any_kernel, whole.bias_desc(), blocked(n, oc, r, w),
                                       one, sides, sides);
    plan.forward[i] = {fd, forward_attr, engine};
    size_t scratchpad = plan.forward[i].scratchpad_desc().get_size();
    if (with_backward) {
      dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_winograd, blocked(n, ic, r + 2, w),
                                               any_kernel, blocked(n, oc, r, w), one, sides, sides);
      plan.backward[i] = {bd, backward_attr, engine, plan.forward[i]};
      scratchpad = std::max(scratchpad, plan.backward[i].scratchpad_desc().get_size());
    }
    return scratchpad;
  };
  try {
    // The scratchpad is a part per row (the transformed tiles) and a fixed
    // part (the transformed weights: 36 MiB at 512 -> 512 channels), which
    // strips cannot cut: aim at the larger of kStripScratchBytes and twice
    // the fixed part, fitted from the smallest strip and the whole map.
    const double smallest = double(make(0, kMinStripRows));
    const double per_row = (double(whole_scratchpad) - smallest) / double(h - kMinStripRows);
    if (per_row <= 0) return {};
    const double fixed = std::max(0.0, smallest - kMinStripRows * per_row);
    const double aim = std::max(double(kStripScratchBytes), 2 * fixed);
    const int rows = std::max(kMinStripRows, int(kMinStripRows + (aim - smallest) / per_row) / 4 * 4);
    if (memory::dim(2) * rows > h) return {};  // less than half the scratchpad saved: not worth the strips' halos
    plan.rows = rows;
    plan.last_rows = int(h - (h - 1) / rows * rows);
    make(0, rows);
    make(1, plan.last_rows);
  } catch (const dnnl::error&) {
    return {};  // no Winograd for these shapes: the whole map at once
  }
  // One weights format per direction (CpuWeights keeps a copy per format).
  if (plan.forward[0].weights_desc() != plan.forward[1].weights_desc() ||
      (with_backward && plan.backward[0].weights_desc() != plan.backward[1].weights_desc()))
    return {};
  return plan;
}

StripedConv::StripedConv(const dnnl::engine& engine, const StripPlan& plan, const memory& weights_forward,
                         const memory& weights_backward, const memory& bias, void* input_strip, void* output_strip,
                         void* scratchpad)
    : engine_(engine),
      plan_(plan),
      weights_forward_(weights_forward),
      weights_backward_(weights_backward),
      bias_(bias),
      input_strip_(input_strip),
      output_strip_(output_strip),
      scratchpad_(scratchpad) {
  for (int i = 0; i < 2; i++) {
    forward_[i] = dnnl::convolution_forward(plan_.forward[i]);
    if (weights_backward_) backward_[i] = dnnl::convolution_backward_data(plan_.backward[i]);
  }
}

namespace {

// A map in nChw16c, as rows: `planes` (batch x channel blocks) of `h` rows of
// `row` floats each (width x 16).
struct Rows {
  float* data;
  size_t planes, h, row;
  float* at(size_t plane, size_t y) const { return data + (plane * h + y) * row; }
};

Rows rows_of(const memory& m, size_t h) {
  const memory::dims d = m.get_desc().dims();
  return {static_cast<float*>(m.get_data_handle()), size_t(d[0] * (d[1] / 16)), h, size_t(d[3]) * 16};
}

}  // namespace

void StripedConv::forward(dnnl::stream& s, const memory& src, const memory& dst) const {
  const size_t h = size_t(src.get_desc().dims()[2]);
  const Rows in = rows_of(src, h), out = rows_of(dst, h);
  for (size_t y0 = 0; y0 < h; y0 += size_t(plan_.rows)) {
    const int i = y0 + size_t(plan_.rows) >= h ? 1 : 0;
    const size_t r = size_t(i == 0 ? plan_.rows : plan_.last_rows);
    // The strip's input: rows y0 - 1 .. y0 + r, zeros beyond the image.
    const Rows strip{static_cast<float*>(input_strip_), in.planes, r + 2, in.row};
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t p = 0; p < in.planes; p++)
      for (size_t j = 0; j < r + 2; j++) {
        const long y = long(y0 + j) - 1;
        if (y < 0 || y >= long(h))
          std::memset(strip.at(p, j), 0, in.row * sizeof(float));
        else
          std::memcpy(strip.at(p, j), in.at(p, size_t(y)), in.row * sizeof(float));
      }
    const auto& pd = plan_.forward[i];
    forward_[i].execute(s, {{DNNL_ARG_SRC, memory(pd.src_desc(), engine_, input_strip_)},
                            {DNNL_ARG_WEIGHTS, weights_forward_},
                            {DNNL_ARG_BIAS, bias_},
                            {DNNL_ARG_DST, memory(pd.dst_desc(), engine_, output_strip_)},
                            {DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), engine_, scratchpad_)}});
    s.wait();
    const Rows result{static_cast<float*>(output_strip_), out.planes, r, out.row};
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < out.planes; p++) std::memcpy(out.at(p, y0), result.at(p, 0), r * out.row * sizeof(float));
  }
}

void StripedConv::backward(dnnl::stream& s, const memory& diff_dst, const memory& diff_src) const {
  const size_t h = size_t(diff_src.get_desc().dims()[2]);
  const Rows grad_out = rows_of(diff_dst, h), grad_in = rows_of(diff_src, h);
#pragma omp parallel for schedule(static)
  for (size_t p = 0; p < grad_in.planes; p++) std::memset(grad_in.at(p, 0), 0, h * grad_in.row * sizeof(float));
  for (size_t y0 = 0; y0 < h; y0 += size_t(plan_.rows)) {
    const int i = y0 + size_t(plan_.rows) >= h ? 1 : 0;
    const size_t r = size_t(i == 0 ? plan_.rows : plan_.last_rows);
    // The strip's output rows' gradient in, its input rows' (halo included) out.
    const Rows strip_out{static_cast<float*>(output_strip_), grad_out.planes, r, grad_out.row};
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < grad_out.planes; p++)
      std::memcpy(strip_out.at(p, 0), grad_out.at(p, y0), r * grad_out.row * sizeof(float));
    const auto& pd = plan_.backward[i];
    backward_[i].execute(s, {{DNNL_ARG_DIFF_DST, memory(pd.diff_dst_desc(), engine_, output_strip_)},
                             {DNNL_ARG_WEIGHTS, weights_backward_},
                             {DNNL_ARG_DIFF_SRC, memory(pd.diff_src_desc(), engine_, input_strip_)},
                             {DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), engine_, scratchpad_)}});
    s.wait();
    const Rows strip_in{static_cast<float*>(input_strip_), grad_in.planes, r + 2, grad_in.row};
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t p = 0; p < grad_in.planes; p++)
      for (size_t j = 0; j < r + 2; j++) {
        const long y = long(y0 + j) - 1;
        if (y < 0 || y >= long(h)) continue;
        float* to = grad_in.at(p, size_t(y));
        const float* from = strip_in.at(p, j);
        for (size_t k = 0; k < grad_in.row; k++) to[k] += from[k];
      }
  }
}

}  // namespace nst::cpu
