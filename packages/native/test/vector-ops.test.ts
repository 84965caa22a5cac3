/**
 * The addon's vector arithmetic for core's L-BFGS (native/src/vector_ops.cc)
 * against its JavaScript twin (JS_VECTOR_OPS) and a float64 reference summed
 * in another order: the same results, so an L-BFGS run takes the same steps
 * with either; and the native sessions hand them to core's L-BFGS.
 */
import { describe, expect, it } from 'vitest';
import { JS_VECTOR_OPS, Lbfgs, type VectorOps } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { addon, skipReason } from './helpers.js';

/** sum a[i] b[i] in float64, pairwise (another order than both implementations). */
function pairwiseDot(a: Float32Array, b: Float32Array, lo = 0, hi = a.length): number {
  if (hi - lo <= 8) {
    let s = 0;
    for (let i = lo; i < hi; i++) s += a[i] * b[i];
    return s;
  }
  const mid = (lo + hi) >> 1;
  return pairwiseDot(a, b, lo, mid) + pairwiseDot(a, b, mid, hi);
}

// 65537 and 360000 cross the size from which the native loops use every thread.
const LENGTHS = [0, 1, 17, 65537, 360000];

describe.skipIf(!addon)(`native vector ops${skipReason ? ` (${skipReason})` : ''}`, () => {
  const native: VectorOps = { dot: (a, b) => addon!.vectorDot(a, b), axpy: (alpha, x, y) => addon!.vectorAxpy(alpha, x, y) };

  it('dot equals the float64 sum of the products', () => {
    for (const n of LENGTHS) {
      const a = testImage(1 + n, n, -3, 3);
      const b = testImage(2 + n, n, -3, 3);
      const want = pairwiseDot(a, b);
      let scale = 0;
      for (let i = 0; i < n; i++) scale += Math.abs(a[i] * b[i]);
      // float64 sums of exact products: orders differ by a few ulps of the sum of magnitudes.
      expect(Math.abs(native.dot(a, b) - want), `n ${n}`).toBeLessThanOrEqual(1e-13 * scale);
      expect(Math.abs(JS_VECTOR_OPS.dot(a, b) - want), `n ${n}`).toBeLessThanOrEqual(1e-13 * scale);
    }
  });

  it('axpy equals the JavaScript twin bit for bit, and the formula', () => {
    for (const n of LENGTHS) {
      const x = testImage(3 + n, n, -3, 3);
      const y0 = testImage(4 + n, n, -3, 3);
      const [mine, theirs] = [Float32Array.from(y0), Float32Array.from(y0)];
      native.axpy(-0.37, x, mine);
      JS_VECTOR_OPS.axpy(-0.37, x, theirs);
      expect(Buffer.from(mine.buffer).equals(Buffer.from(theirs.buffer)), `n ${n}`).toBe(true);
      for (let i = 0; i < Math.min(n, 5); i++) expect(mine[i]).toBe(Math.fround(y0[i] - 0.37 * x[i]));
    }
  });

  it('refuses vectors of different lengths and non-arrays with a JS error', () => {
    expect(() => addon!.vectorDot(new Float32Array(3), new Float32Array(4))).toThrow(/vectorDot: b/);
    expect(() => addon!.vectorAxpy(1, new Float32Array(3), new Float32Array(2))).toThrow(/vectorAxpy: y/);
    expect(() => addon!.vectorAxpy('1' as unknown as number, new Float32Array(3), new Float32Array(3))).toThrow(/alpha must be a number/);
    expect(() => addon!.vectorDot([1, 2] as unknown as Float32Array, new Float32Array(2))).toThrow(/vectorDot: a/);
  });

  it('L-BFGS takes the same steps with the native ops as with the JavaScript ones', async () => {
    // A separable non-quadratic objective: sum w_i (x_i - c_i)^4 / 4 + (x_i - c_i)^2 / 2.
    const n = 70000;
    const c = testImage(5, n, -1, 1);
    const w = testImage(6, n, 0.5, 2);
    const objective = async (x: Float32Array) => {
      const gradient = new Float32Array(n);
      let loss = 0;
      for (let i = 0; i < n; i++) {
        const d = x[i] - c[i];
        loss += (w[i] * d ** 4) / 4 + (d * d) / 2;
        gradient[i] = w[i] * d ** 3 + d;
      }
      return { loss, gradient, detail: undefined };
    };
    const x0 = testImage(7, n, -3, 3);
    const runs = [JS_VECTOR_OPS, native].map((ops) => new Lbfgs(x0, objective, { history: 8 }, ops));
    for (let k = 0; k < 12; k++) for (const run of runs) await run.step();
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(runs[0].x[i] - runs[1].x[i]));
    console.log(`L-BFGS, 12 iterations: JS ops vs native ops, max |x difference| ${worst.toExponential(1)}`);
    expect(worst).toBeLessThan(1e-5);
    expect(runs[1].evaluations).toBe(runs[0].evaluations);
  });

  it("the cpu backend's sessions carry them, so core's host L-BFGS uses them", async () => {
    const backend = await createNativeBackend('cpu');
    await backend.loadWeights(testWeights(2));
    const session = await backend.createSession({
      height: 8,
      width: 8,
      batch: 1,
      pooling: 'avg',
      loss: {
        contentLayers: [{ layer: 'conv1_2', weight: 1 }],
        styleLayers: [{ layer: 'conv1_1', weight: 1 }],
        alpha: 1,
        beta: 1,
        tvWeight: 0,
      },
    });
    try {
      const ops = session.vectorOps!;
      const a = Float32Array.of(1, 2, 3);
      expect(ops.dot(a, a)).toBe(14);
      // The addon's own: only it checks lengths, with this message.
      expect(() => ops.dot(a, new Float32Array(2))).toThrow(/vectorDot: b/);
    } finally {
      session.dispose();
      backend.dispose();
    }
  });
});
