/**
 * Self-test of the float64 reference: its gradient against central finite
 * differences of its own loss (the independent check: forward and backward
 * are written separately), plus hand-computed pooling at odd sizes and the
 * spec's unnormalised style formula.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_LOSS, Rng } from '@nst/core';
import type { SessionOptions, Targets } from '@nst/core';
import {
  gram,
  pool2x2,
  pool2x2Backward,
  referenceItem,
  referenceLossAndGradient,
  referenceTargets,
  styleLoss,
  SMALL_LOSS,
  tensor3,
} from './vgg-float64.js';
import { testImage, testWeights } from './random-weights.js';

function targetsFor(seed: number, h: number, w: number): Targets {
  return {
    content: { height: h, width: w, data: testImage(seed, h * w * 3) },
    styles: [
      { image: { height: h + 2, width: w - 1, data: testImage(seed + 1, (h + 2) * (w - 1) * 3) }, weight: 0.7 },
      { image: { height: h, width: w, data: testImage(seed + 2, h * w * 3) }, weight: 0.3 },
    ],
  };
}

describe('float64 reference', () => {
  it('pools 2x2 with TF SAME semantics at odd sizes (avg over valid cells only)', () => {
    // 3 x 3 x 1: windows {a,b,d,e}, {c,f}, {g,h}, {i}
    const x = tensor3(3, 3, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(pool2x2(x, 'avg').data)).toEqual([3, 4.5, 7.5, 9]);
    expect(Array.from(pool2x2(x, 'max').data)).toEqual([5, 6, 8, 9]);
    const g = tensor3(2, 2, 1, [4, 2, 2, 1]);
    expect(Array.from(pool2x2Backward(x, g, 'avg').data)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(Array.from(pool2x2Backward(x, g, 'max').data)).toEqual([0, 0, 0, 0, 4, 2, 0, 2, 1]);
  });

  it("style loss equals the spec's 1/(4 nC^2 N^2) sum (G_S - G_G)^2 with unnormalised Grams", () => {
    const rng = new Rng(5);
    const [h, w, c] = [3, 4, 5];
    const a = tensor3(h, w, c, rng.fillUniform(new Float32Array(h * w * c), 0, 2));
    const s = tensor3(h, w, c, rng.fillUniform(new Float32Array(h * w * c), 0, 2));
    const n = h * w;
    let expected = 0;
    for (let i = 0; i < c; i++)
      for (let j = 0; j < c; j++) {
        let gs = 0;
        let gg = 0;
        for (let p = 0; p < n; p++) {
          gs += s.data[p * c + i] * s.data[p * c + j];
          gg += a.data[p * c + i] * a.data[p * c + j];
        }
        expected += (gs - gg) ** 2;
      }
    expected /= 4 * c * c * n * n;
    expect(styleLoss(a, gram(s)).loss).toBeCloseTo(expected, 12);
  });

  for (const pooling of ['avg', 'max'] as const) {
    it(`gradient matches central finite differences (${pooling} pooling, 7x9, batch 2, blended styles, TV)`, () => {
      const [h, w, batch] = [7, 9, 2];
      const weights = testWeights(11, 5); // conv1_1 .. conv3_1
      const options: SessionOptions = { height: h, width: w, batch, pooling, loss: SMALL_LOSS };
      const targets = [targetsFor(100, h, w), targetsFor(200, h, w)];
      const images = Float64Array.from(testImage(7, batch * h * w * 3));
      const { losses, gradient } = referenceLossAndGradient(weights, options, targets, images);
      for (const l of losses) {
        expect(l.content).toBeGreaterThan(0);
        expect(l.style).toBeGreaterThan(0);
        expect(l.total).toBeCloseTo(10 * l.content + 40 * l.style + 0.01 * l.tv, 6);
      }
      // Targets are fixed: finite differences only need each item's own loss.
      const itemSize = h * w * 3;
      const fixed = targets.map((t) => referenceTargets(weights, options, t));
      const total = (x: Float64Array, i: number) => {
        const b = Math.floor(i / itemSize);
        const item = tensor3(h, w, 3, x.subarray(b * itemSize, (b + 1) * itemSize));
        return referenceItem(weights, options, fixed[b], item).losses.total;
      };
      const rng = new Rng(3);
      const step = 1e-3; // image values are ~50: small enough for O(step^2) error, large against rounding
      const gmax = Math.max(...Array.from(gradient, Math.abs));
      for (let k = 0; k < 24; k++) {
        const i = rng.nextU32() % images.length;
        const plus = images.slice();
        const minus = images.slice();
        plus[i] += step;
        minus[i] -= step;
        const fd = (total(plus, i) - total(minus, i)) / (2 * step);
        expect(Math.abs(fd - gradient[i])).toBeLessThan(1e-6 * gmax);
      }
    });
  }

  it('runs the default loss on full-depth weights (conv5_1 at 16x12)', () => {
    const [h, w] = [16, 12];
    const weights = testWeights(1);
    const options: SessionOptions = { height: h, width: w, batch: 1, pooling: 'avg', loss: DEFAULT_LOSS };
    const { losses, gradient } = referenceLossAndGradient(weights, options, [targetsFor(9, h, w)], testImage(4, h * w * 3));
    expect(losses[0].content).toBeGreaterThan(0);
    expect(losses[0].style).toBeGreaterThan(0);
    expect(losses[0].tv).toBeGreaterThan(0);
    expect(gradient.every(Number.isFinite)).toBe(true);
    expect(gradient.some((g) => g !== 0)).toBe(true);
  });
});
