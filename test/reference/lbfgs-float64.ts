/**
 * A float64 reference of L-BFGS on a quadratic f(x) = x'Ax/2 - b'x, written
 * independently of packages/core/src/lbfgs.ts: the inverse-Hessian
 * approximation is formed as a dense matrix by the BFGS update
 *   H <- (I - rho s y') H (I - rho y s') + rho s s',   rho = 1 / y's,
 * applied to the newest `history` pairs from H0 = (s'y / y'y) I, and every
 * step is the exact line minimum t = -g'd / d'Ad. Slow (n^3 per step) and
 * clear; for small n only.
 */
export interface Quadratic {
  readonly n: number;
  /** n x n, symmetric positive definite, row-major. */
  readonly a: Float64Array;
  readonly b: Float64Array;
}

export function quadraticValue(q: Quadratic, x: ArrayLike<number>): number {
  const ax = matVec(q, x);
  let f = 0;
  for (let i = 0; i < q.n; i++) f += 0.5 * x[i] * ax[i] - q.b[i] * x[i];
  return f;
}

export function quadraticGradient(q: Quadratic, x: ArrayLike<number>): Float64Array {
  const g = matVec(q, x);
  for (let i = 0; i < q.n; i++) g[i] -= q.b[i];
  return g;
}

/** The iterates x_1 .. x_iterations of L-BFGS with exact line searches. */
export function referenceLbfgsQuadratic(q: Quadratic, x0: ArrayLike<number>, history: number, iterations: number): Float64Array[] {
  const n = q.n;
  const x = Float64Array.from(x0);
  let g = quadraticGradient(q, x);
  const pairs: { s: Float64Array; y: Float64Array }[] = [];
  const iterates: Float64Array[] = [];
  for (let k = 0; k < iterations; k++) {
    const h = inverseHessian(n, pairs);
    const d = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) d[i] -= h[i * n + j] * g[j];
    const ad = matVec(q, d);
    const t = -dotF(g, d) / dotF(d, ad);
    const s = d.map((v) => t * v);
    for (let i = 0; i < n; i++) x[i] += s[i];
    const gNew = quadraticGradient(q, x);
    pairs.push({ s, y: gNew.map((v, i) => v - g[i]) });
    if (pairs.length > history) pairs.shift();
    g = gNew;
    iterates.push(Float64Array.from(x));
  }
  return iterates;
}

function inverseHessian(n: number, pairs: readonly { s: Float64Array; y: Float64Array }[]): Float64Array {
  let h: Float64Array = new Float64Array(n * n);
  const newest = pairs[pairs.length - 1];
  const gamma = newest ? dotF(newest.s, newest.y) / dotF(newest.y, newest.y) : 1;
  for (let i = 0; i < n; i++) h[i * n + i] = gamma;
  for (const { s, y } of pairs) {
    const rho = 1 / dotF(y, s);
    // V = I - rho y s'  ;  H <- V' H V + rho s s'
    const v = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) v[i * n + j] = (i === j ? 1 : 0) - rho * y[i] * s[j];
    const hv = matMul(n, h, v);
    const next = matMul(n, transpose(n, v), hv);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) next[i * n + j] += rho * s[i] * s[j];
    h = next;
  }
  return h;
}

function matVec(q: Quadratic, x: ArrayLike<number>): Float64Array {
  const out = new Float64Array(q.n);
  for (let i = 0; i < q.n; i++) for (let j = 0; j < q.n; j++) out[i] += q.a[i * q.n + j] * x[j];
  return out;
}

function matMul(n: number, a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) out[i * n + j] += a[i * n + k] * b[k * n + j];
  return out;
}

function transpose(n: number, a: Float64Array): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[j * n + i] = a[i * n + j];
  return out;
}

function dotF(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * The minimum of the quadratic over a box (per-channel bounds, element i
 * in [lower[i % k], upper[i % k]]) by projected gradient descent in float64,
 * x <- P(x - g / L) with L the largest eigenvalue bound `lipschitz`: slow
 * (linear rate 1 - 1/condition) and certain, unlike the L-BFGS under test.
 */
export function referenceBoxMinimum(
  q: Quadratic,
  lower: readonly number[],
  upper: readonly number[],
  lipschitz: number,
  iterations: number,
): Float64Array {
  const k = lower.length;
  const x = new Float64Array(q.n);
  for (let it = 0; it < iterations; it++) {
    const g = quadraticGradient(q, x);
    for (let i = 0; i < q.n; i++) x[i] = Math.min(Math.max(x[i] - g[i] / lipschitz, lower[i % k]), upper[i % k]);
  }
  return x;
}
