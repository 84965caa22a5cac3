import { describe, expect, it } from 'vitest';
import { Lbfgs, cubicMinimum, lbfgsMemoryBytes } from '@nst/core';
import {
  quadraticGradient,
  quadraticValue,
  referenceBoxMinimum,
  referenceLbfgsQuadratic,
  type Quadratic,
} from '../../../test/reference/lbfgs-float64.js';
import { testImage } from '../../../test/reference/random-weights.js';

/** A = Q diag(lambda) Q' with eigenvalues 1 .. 50 and a random orthogonal Q (Gram-Schmidt). */
function quadratic(n: number, seed: number): Quadratic {
  const r = testImage(seed, n * n, -1, 1);
  const q: Float64Array[] = [];
  for (let k = 0; k < n; k++) {
    const v = Float64Array.from(r.subarray(k * n, (k + 1) * n));
    for (const u of q) {
      const p = u.reduce((s, ui, i) => s + ui * v[i], 0);
      for (let i = 0; i < n; i++) v[i] -= p * u[i];
    }
    const norm = Math.hypot(...v);
    q.push(v.map((x) => x / norm));
  }
  const a = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const lambda = 1 + (49 * k) / (n - 1);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] += lambda * q[k][i] * q[k][j];
  }
  return { n, a, b: Float64Array.from(testImage(seed + 1, n, -1, 1)) };
}

const objective = (q: Quadratic) => async (x: Float32Array) => {
  return { loss: quadraticValue(q, x), gradient: Float32Array.from(quadraticGradient(q, x)), detail: undefined };
};

/** max |a - b| / max |b|: the worst coordinate, relative to the iterate's scale. */
function maxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}

describe('L-BFGS', () => {
  it('follows the float64 dense-BFGS reference iterate by iterate on a quadratic (near-exact line search)', async () => {
    const q = quadratic(24, 5);
    const x0 = testImage(9, 24, -3, 3);
    const want = referenceLbfgsQuadratic(q, x0, 5, 10);
    const opt = new Lbfgs(x0, objective(q), { history: 5, c2: 1e-5, maxLineSearch: 40 });
    const errors: number[] = [];
    for (let k = 0; k < 10; k++) {
      await opt.step();
      errors.push(maxError(opt.x, want[k]));
    }
    console.log(`L-BFGS vs float64 reference, max error per iterate: ${errors.map((e) => e.toExponential(1)).join(' ')}`);
    for (const e of errors) expect(e).toBeLessThan(1e-3);
  });

  it('with the default strong-Wolfe search: every step meets the Wolfe conditions and it reaches the minimum', async () => {
    const q = quadratic(24, 11);
    const x0 = testImage(12, 24, -3, 3);
    const opt = new Lbfgs(x0, objective(q), { history: 5 });
    for (let k = 0; k < 40; k++) {
      const before = Float64Array.from(opt.x);
      const f0 = quadraticValue(q, before);
      await opt.step();
      // Wolfe's sufficient decrease, checked in float64 along the step taken.
      const s = Float64Array.from(opt.x, (v, i) => v - before[i]);
      const g0 = quadraticGradient(q, before);
      const slope0 = g0.reduce((a, v, i) => a + v * s[i], 0);
      const slope1 = quadraticGradient(q, opt.x).reduce((a, v, i) => a + v * s[i], 0);
      if (Math.hypot(...g0) < 1e-4) break; // float32 floor
      expect(quadraticValue(q, opt.x)).toBeLessThanOrEqual(f0 + 1e-4 * slope0 + 1e-9);
      expect(Math.abs(slope1)).toBeLessThanOrEqual(0.9 * Math.abs(slope0) + 1e-9);
    }
    // The minimum solves A x = b: the gradient there is zero.
    const g = quadraticGradient(q, opt.x);
    expect(Math.hypot(...g)).toBeLessThan(1e-3);
    expect(opt.evaluations).toBeGreaterThanOrEqual(opt.iterations);
  });

  it('with bounds: evaluates only inside the box and reaches the float64 box minimum (KKT conditions hold)', async () => {
    const q = quadratic(24, 21);
    // Per-channel boxes (k = 3, as HWC images) tight enough that the unconstrained minimum lies outside
    // (powers of two, exact in float32 like x).
    const lower = [-0.0625, -0.125, -0.03125];
    const upper = [0.0625, 0.03125, 0.125];
    const inside = (v: ArrayLike<number>) => Array.from(v).every((x, i) => x >= lower[i % 3] && x <= upper[i % 3]);
    const want = referenceBoxMinimum(q, lower, upper, 50, 5000);
    const held = Array.from(want).filter((x, i) => x === lower[i % 3] || x === upper[i % 3]).length;
    expect(held).toBeGreaterThanOrEqual(4); // the box binds: a real test of the projection
    let outside = 0;
    const opt = new Lbfgs(
      testImage(22, 24, -3, 3),
      async (x) => {
        if (!inside(x)) outside++;
        return objective(q)(x);
      },
      { history: 5, bounds: { lower, upper } },
    );
    expect(inside(opt.x)).toBe(true); // the start is projected
    for (let k = 0; k < 60; k++) await opt.step();
    expect(outside).toBe(0);
    expect(maxError(opt.x, want)).toBeLessThan(1e-4);
    // KKT: zero gradient where free, pushing outward where held.
    const g = quadraticGradient(q, opt.x);
    for (let i = 0; i < 24; i++) {
      if (want[i] === lower[i % 3]) expect(g[i]).toBeGreaterThan(-1e-4);
      else if (want[i] === upper[i % 3]) expect(g[i]).toBeLessThan(1e-4);
      else expect(Math.abs(g[i])).toBeLessThan(1e-4);
    }
    expect(quadraticValue(q, opt.x)).toBeLessThanOrEqual(quadraticValue(q, want) + 1e-6);
  });

  it('cubic interpolation finds the minimum of a cubic exactly', () => {
    // f(t) = t^3 - 3t: minimum at t = 1; f' = 3t^2 - 3.
    const f = (t: number) => ({ t, loss: t ** 3 - 3 * t, slope: 3 * t * t - 3 });
    expect(cubicMinimum(f(0), f(2), 0, 2)).toBeCloseTo(1, 12);
    expect(cubicMinimum(f(2), f(0.5), 0, 2)).toBeCloseTo(1, 12);
    expect(cubicMinimum(f(0), f(2), 1.5, 2)).toBe(1.5);
  });

  it('holds 2 x history x n floats of pairs and 11 vectors of n', () => {
    expect(lbfgsMemoryBytes(100, 1000)).toBe((200 + 11) * 1000 * 4);
  });
});
