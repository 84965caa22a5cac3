/**
 * Spatial control (issue 25) on the TensorFlow.js backend: style masks,
 * style region masks and a content mask against the float64 reference
 * (test/reference/masked-float64.ts) on the shared masked cases, within the
 * tolerances of the unmasked parity test (tfjs-backend.test.ts); all-white
 * masks give exactly the unmasked loss and gradient.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adamStepSizes, DEFAULT_ADAM, type Backend, type Session, type SessionOptions, type Targets } from '@nst/core';
import { createTfjsBackend } from '@nst/tfjs';
import { relL2 } from '@nst/test-helpers';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { maskedCases, referenceMaskedBatch, whiteMasked } from '../../../test/reference/masked-cases.js';

const WEIGHTS = testWeights(1); // conv1_1 .. conv5_1

let backend: Backend;
beforeAll(async () => {
  backend = await createTfjsBackend();
  await backend.loadWeights(WEIGHTS);
});
afterAll(() => backend?.dispose());

async function open(options: SessionOptions, targets: readonly Targets[], images: Float32Array): Promise<Session> {
  const session = await backend.createSession(options);
  await session.setTargets(targets);
  await session.setImages(images);
  return session;
}

describe('tfjs masks vs the float64 reference', () => {
  for (const c of maskedCases()) {
    it(c.name, async () => {
      const images = testImage(7, c.options.batch * c.options.height * c.options.width * 3, -30, 30);
      const session = await open(c.options, c.targets, images);
      const got = await session.lossAndGradient();
      const want = referenceMaskedBatch(WEIGHTS, c.options, c.targets, images);
      got.losses.forEach((g, b) => {
        for (const key of ['content', 'style', 'tv', 'total'] as const) {
          const scale = Math.max(Math.abs(want.losses[b][key]), 1e-30);
          expect(Math.abs(g[key] - want.losses[b][key]) / scale, `item ${b} ${key}`).toBeLessThan(1e-5);
        }
      });
      expect(relL2(got.gradient, want.gradient)).toBeLessThan(1e-4);
      // The masks matter here: the unmasked loss differs.
      const plain = await open(
        c.options,
        c.targets.map((t) => whiteMasked(t).unmasked),
        images,
      );
      const unmasked = await plain.lossAndGradient();
      expect(Math.abs(unmasked.losses[0].style - got.losses[0].style) / got.losses[0].style).toBeGreaterThan(1e-2);
      // Adam runs through the masked loss.
      await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, 2) });
      const after = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
      expect(after[0].total).toBeLessThan(got.losses[0].total);
      session.dispose();
      plain.dispose();
    });
  }

  it('all-white masks give exactly the unmasked loss and gradient', async () => {
    const c = maskedCases()[0];
    const images = testImage(9, c.options.batch * c.options.height * c.options.width * 3, -30, 30);
    const pairs = c.targets.map(whiteMasked);
    const results = [];
    for (const targets of [pairs.map((p) => p.white), pairs.map((p) => p.unmasked)]) {
      const session = await open(c.options, targets, images);
      results.push(await session.lossAndGradient());
      session.dispose();
    }
    expect(results[0].losses).toEqual(results[1].losses);
    expect(results[0].gradient).toEqual(results[1].gradient);
  });
});
