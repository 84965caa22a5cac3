/**
 * Adam (Kingma & Ba 2014) in TensorFlow 1's form, the notebook's optimiser:
 *   m <- b1 m + (1 - b1) g
 *   v <- b2 v + (1 - b2) g^2
 *   x <- x - lr_t m / (sqrt(v) + eps),   lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
 * (eps is added to sqrt(v) before the bias correction is applied, as
 * tf.train.AdamOptimizer does). Core owns the schedule: it computes lr_t for
 * each step and hands the list to the backend, whose kernel does the
 * element-wise update. The loop below is the reference those kernels are
 * tested against.
 */
export interface AdamConfig {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}

export const DEFAULT_ADAM: AdamConfig = { lr: 2.0, beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/** lr_t for steps t = firstStep .. firstStep + count - 1 (t counts from 1). */
export function adamStepSizes(cfg: AdamConfig, firstStep: number, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const t = firstStep + i;
    out[i] = (cfg.lr * Math.sqrt(1 - cfg.beta2 ** t)) / (1 - cfg.beta1 ** t);
  }
  return out;
}

/** The element-wise update with step size lrT, in place, in float64 arithmetic. */
export function adamUpdate(
  x: Float32Array | Float64Array,
  grad: ArrayLike<number>,
  m: Float32Array | Float64Array,
  v: Float32Array | Float64Array,
  lrT: number,
  cfg: AdamConfig,
): void {
  for (let i = 0; i < x.length; i++) {
    const g = grad[i];
    m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
    v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
    x[i] -= (lrT * m[i]) / (Math.sqrt(v[i]) + cfg.eps);
  }
}
