/**
 * The masked objective of spatial control (masked-float64.ts) checked
 * independently: white masks against the plain reference (to the last
 * digit), the guided Gram of a binary mask against the plain Gram of the
 * positions it keeps, the mask's pooling against the network's layer sizes
 * and hand values, and the gradient against central finite differences
 * with soft masks, several regions, a style region and a content mask, at
 * an odd size, with both poolings.
 */
import { describe, expect, it } from 'vitest';
import { Rng, type SessionOptions, type Targets } from '@nst/core';
import { guidedGram, maskAtLayers, referenceMaskedItem, type MaskedTargets } from './masked-float64.js';
import { testImage, testWeights } from './random-weights.js';
import { forward, gram, referenceItem, referenceTargets, SMALL_LOSS, tensor3 } from './vgg-float64.js';

const weights = testWeights(11, 5); // conv1_1 .. conv3_1

const picture = (seed: number, height: number, width: number) => ({ height, width, data: testImage(seed, height * width * 3) });
/** A soft mask: values in [0, 1], some exactly 0 and 1. */
const softMask = (seed: number, n: number) =>
  Float64Array.from(new Rng(seed).fillUniform(new Float32Array(n), -0.3, 1.3), (v) => Math.min(1, Math.max(0, v)));

describe('masked objective, float64', () => {
  it('with white masks (or none) is the unmasked objective, to the last digit, for one style and for a blend', () => {
    const [h, w] = [9, 11];
    const options: SessionOptions = { height: h, width: w, batch: 1, pooling: 'avg', loss: SMALL_LOSS };
    const image = tensor3(h, w, 3, testImage(7, h * w * 3));
    const white = new Float64Array(h * w).fill(1);
    const plain: Targets = {
      content: picture(1, h, w),
      styles: [
        { image: picture(2, h + 2, w - 1), weight: 0.75 },
        { image: picture(3, h, w), weight: 0.25 },
      ],
    };
    for (const styles of [plain.styles.slice(0, 1).map((s) => ({ ...s, weight: 1 })), plain.styles]) {
      const expected = referenceItem(weights, options, referenceTargets(weights, options, { ...plain, styles }), image);
      const masked: MaskedTargets = {
        content: plain.content,
        styles: styles.map((s) => ({ ...s, mask: white, region: new Float64Array(s.image.height * s.image.width).fill(1) })),
        contentMask: white,
      };
      const unmasked: MaskedTargets = { content: plain.content, styles: styles.map(({ image, weight }) => ({ image, weight })) };
      for (const t of [masked, unmasked]) {
        const got = referenceMaskedItem(weights, options, t, image);
        expect(got.losses).toEqual(expected.losses);
        expect(got.gradient).toEqual(expected.gradient);
      }
    }
  });

  it("guides the Gram: a binary mask's Gram is the plain Gram of the positions it keeps; no mass, no Gram", () => {
    const [h, w, c] = [5, 7, 4];
    const a = tensor3(h, w, c, new Rng(2).fillUniform(new Float32Array(h * w * c), 0, 3));
    const mask = Float64Array.from({ length: h * w }, (_, p) => (p % 3 === 0 || p > 25 ? 1 : 0));
    const kept = [...mask.keys()].filter((p) => mask[p] === 1);
    const rows = tensor3(
      1,
      kept.length,
      c,
      kept.flatMap((p) => Array.from(a.data.subarray(p * c, (p + 1) * c))),
    );
    const got = guidedGram(a, mask)!;
    const expected = gram(rows);
    for (let k = 0; k < expected.length; k++) expect(got[k]).toBeCloseTo(expected[k], 12);
    expect(guidedGram(a, new Float64Array(h * w))).toBeUndefined();
  });

  it('pools a mask as the network pools: the layer sizes at an odd size, and averages over the valid cells', () => {
    const [h, w] = [13, 11];
    const at = maskAtLayers(softMask(4, h * w), h, w, 4);
    const records = forward(weights, 'max', tensor3(h, w, 3, testImage(1, h * w * 3)), 4);
    expect(at.map((m) => m.length)).toEqual(records.map((r) => r.activation.h * r.activation.w));
    // 3x3, one pooling (after conv1_2): windows {a,b,d,e}, {c,f}, {g,h}, {i}.
    const hand = maskAtLayers(Float64Array.from([1, 0, 1, 0, 0, 1, 0.5, 0.5, 0.25]), 3, 3, 2);
    expect(Array.from(hand[2])).toEqual([0.25, 1, 0.5, 0.25]);
  });

  for (const pooling of ['avg', 'max'] as const) {
    it(`gradient matches central finite differences (${pooling} pooling, 9x13, two regions with soft masks, a style region, a content mask)`, () => {
      const [h, w] = [9, 13];
      const options: SessionOptions = { height: h, width: w, batch: 1, pooling, loss: SMALL_LOSS };
      const sky = softMask(21, h * w);
      const targets: MaskedTargets = {
        content: picture(1, h, w),
        styles: [
          { image: picture(2, h + 2, w - 3), weight: 0.6, mask: sky, region: softMask(22, (h + 2) * (w - 3)) },
          { image: picture(3, h, w), weight: 0.4, mask: sky.map((v) => 1 - v) },
          { image: picture(4, h - 1, w), weight: 0.5, mask: sky }, // shares the sky: blended with the first
        ],
        contentMask: softMask(23, h * w),
      };
      const image = Float64Array.from(testImage(7, h * w * 3));
      const total = (x: Float64Array) => referenceMaskedItem(weights, options, targets, tensor3(h, w, 3, x)).losses;
      const { losses, gradient } = referenceMaskedItem(weights, options, targets, tensor3(h, w, 3, image));
      expect(losses.content).toBeGreaterThan(0);
      expect(losses.style).toBeGreaterThan(0);
      expect(losses.total).toBeCloseTo(10 * losses.content + 40 * losses.style + 0.01 * losses.tv, 6);
      const rng = new Rng(3);
      const step = 1e-3;
      const gmax = Math.max(...Array.from(gradient, Math.abs));
      for (let k = 0; k < 8; k++) {
        const i = rng.nextU32() % image.length;
        const plus = image.slice();
        const minus = image.slice();
        plus[i] += step;
        minus[i] -= step;
        const fd = (total(plus).total - total(minus).total) / (2 * step);
        expect(Math.abs(fd - gradient[i])).toBeLessThan(1e-6 * gmax);
      }
    });
  }

  it('a region whose mask is black everywhere adds no style; a black content mask removes the content loss', () => {
    const [h, w] = [8, 8];
    const options: SessionOptions = { height: h, width: w, batch: 1, pooling: 'avg', loss: SMALL_LOSS };
    const black = new Float64Array(h * w);
    const image = tensor3(h, w, 3, testImage(5, h * w * 3));
    const got = referenceMaskedItem(
      weights,
      options,
      { content: picture(1, h, w), styles: [{ image: picture(2, h, w), weight: 1, mask: black }], contentMask: black },
      image,
    );
    expect([got.losses.content, got.losses.style]).toEqual([0, 0]);
    expect(got.losses.total).toBeCloseTo(0.01 * got.losses.tv, 12);
  });
});
