// Fused element-wise and Gram kernels of the CPU engine. Each makes one pass
// over its tensors (OpenMP over all cores, vectorised inner loops) and sums
// losses in double so that large images do not lose the value to rounding.
// Tensors are NHWC float32; a "layer" here is one batch item's activation,
// seen as an N x C row-major matrix A (N = H * W pixels, C channels).
#pragma once

#include <cstddef>

namespace nst::cpu {

// grad *= (act > 0): the ReLU's backward, using its output as the mask.
void relu_mask(float* grad, const float* act, size_t n);

// Returns sum (a - c)^2; when grad is not null also grad += coef * (a - c).
double content_loss(const float* a, const float* c, size_t n, float coef, float* grad);

// gram = scale * A^T A + accumulate * gram   (C x C; accumulate is 0 or 1).
void gram(const float* a, int n, int c, float scale, float accumulate, float* out);

// The style term of one layer given its target Gram (already / N):
//   D = A^T A / N - target;  returns sum D^2;
//   when grad is not null also grad += coef * A D.
// `scratch` holds C x C floats.
double style_loss(const float* a, int n, int c, const float* target, float coef, float* scratch, float* grad);

// Total variation of one H x W x 3 image: returns
//   sum (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2
// and when grad is not null adds coef * d/dx of it.
double total_variation(const float* x, int h, int w, float coef, float* grad);

// TF1 Adam step with step size lr_t (see packages/core/src/adam.ts), in double.
void adam_update(float* x, const float* g, float* m, float* v, size_t n, double lr_t, double beta1, double beta2,
                 double eps);

}  // namespace nst::cpu
