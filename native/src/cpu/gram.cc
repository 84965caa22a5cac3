#include "gram.h"

#include <algorithm>

#include "../engine.h"

namespace nst::cpu {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

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

// The two matmuls: A^T A (A^T as a strided view of A: C x N with strides
// {1, C}) into C x C float32, and grad (N x C float32) += A (N x C) times a
// C x C bf16 matrix, with a sum post-op. Scratchpads are the caller's.
struct Bf16Gram::Plan {
  memory::desc a_transposed, a, gram_out, d, grad;
  dnnl::matmul::primitive_desc gram, gradient;
};

Bf16Gram::Plan Bf16Gram::plan(const dnnl::engine& engine, int n, int c) {
  Plan p;
  const memory::dim N = n, C = c;
  p.a_transposed = memory::desc({C, N}, dt::bf16, memory::dims{1, C});
  p.a = memory::desc({N, C}, dt::bf16, tag::ab);
  p.gram_out = memory::desc({C, C}, dt::f32, tag::ab);
  p.d = memory::desc({C, C}, dt::bf16, tag::ab);
  p.grad = memory::desc({N, C}, dt::f32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  p.gram = {dnnl::matmul::desc(p.a_transposed, p.a, p.gram_out), attr, engine};
  dnnl::post_ops sum;
  sum.append_sum(1.f);
  attr.set_post_ops(sum);
  p.gradient = {dnnl::matmul::desc(p.a, p.d, p.grad), attr, engine};
  return p;
}

size_t Bf16Gram::buffer_bytes(const dnnl::engine& engine, int n, int c) {
  const Plan p = plan(engine, n, c);
  return 2 * p.d.get_size() + p.gram_out.get_size() +
         std::max(p.gram.scratchpad_desc().get_size(), p.gradient.scratchpad_desc().get_size());
}

Bf16Gram::Bf16Gram(const dnnl::engine& engine, int n, int c) : engine_(engine), stream_(engine), c_(c) {
  const Plan p = plan(engine, n, c);
  gram_ = dnnl::matmul(p.gram);
  gradient_ = dnnl::matmul(p.gradient);
  a_transposed_ = p.a_transposed;
  a_ = p.a;
  gram_out_ = p.gram_out;
  d_desc_ = p.d;
  grad_desc_ = p.grad;
  d_hi_ = memory(p.d, engine_);
  d_lo_ = memory(p.d, engine_);
  const size_t scratch = std::max(p.gram.scratchpad_desc().get_size(), p.gradient.scratchpad_desc().get_size());
  scratchpad_ = memory(memory::desc({memory::dim(std::max<size_t>(scratch, 1))}, dt::u8, tag::x), engine_);
  raw_.resize(size_t(c) * c);
}

void Bf16Gram::gram(const kernels::bf16_bits* a, float scale, float accumulate, float* out) {
  auto* data = const_cast<kernels::bf16_bits*>(a);  // read only
  gram_.execute(stream_, {{DNNL_ARG_SRC, memory(a_transposed_, engine_, data)},
                          {DNNL_ARG_WEIGHTS, memory(a_, engine_, data)},
                          {DNNL_ARG_DST, memory(gram_out_, engine_, raw_.data())},
                          {DNNL_ARG_SCRATCHPAD, scratchpad_}});
  stream_.wait();
  const size_t count = raw_.size();
  if (accumulate != 0.f) {
    for (size_t i = 0; i < count; i++) out[i] += scale * raw_[i];
  } else {
    for (size_t i = 0; i < count; i++) out[i] = scale * raw_[i];
  }
}

void Bf16Gram::add_gradient(const kernels::bf16_bits* a, const float* d, float* grad) {
  auto* hi = static_cast<kernels::bf16_bits*>(d_hi_.get_data_handle());
  auto* lo = static_cast<kernels::bf16_bits*>(d_lo_.get_data_handle());
  for (size_t i = 0; i < size_t(c_) * c_; i++) {
    hi[i] = kernels::float_to_bf16(d[i]);
    lo[i] = kernels::float_to_bf16(d[i] - kernels::bf16_to_float(hi[i]));
  }
  memory src(a_, engine_, const_cast<kernels::bf16_bits*>(a)), dst(grad_desc_, engine_, grad);
  for (const memory& part : {d_hi_, d_lo_})
    gradient_.execute(
        stream_,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, part}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratchpad_}});
  stream_.wait();
}

}  // namespace nst::cpu
