/**
 * The pure-JavaScript fallback (its own test file: TensorFlow.js has one
 * engine per process and vitest runs each file in its own process). The same
 * seam on the cpu kernels must give the reference's loss and gradient.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { DEFAULT_LOSS } from '@nst/core';
import type { SessionOptions, Targets } from '@nst/core';
import { createTfjsBackend, selectTfjsBackend } from '@nst/tfjs';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { referenceLossAndGradient } from '../../../test/reference/vgg-float64.js';

describe('tfjs cpu fallback', () => {
  it("prefer 'cpu' runs the cpu kernels and says so", async () => {
    const backend = await createTfjsBackend({ prefer: 'cpu' });
    expect(backend.detail).toBe('tfjs (cpu, pure JavaScript)');
    expect(tf.getBackend()).toBe('cpu');
    expect((await selectTfjsBackend()).rejected).toEqual([]);
    backend.dispose();
  });

  it('matches the float64 reference (max pooling, 7x9, full depth)', async () => {
    const weights = testWeights(4);
    const backend = await createTfjsBackend({ prefer: 'cpu' });
    await backend.loadWeights(weights);
    const [h, w] = [7, 9];
    const options: SessionOptions = { height: h, width: w, batch: 1, pooling: 'max', loss: { ...DEFAULT_LOSS, tvWeight: 0.1 } };
    const targets: Targets[] = [
      {
        content: { height: h, width: w, data: testImage(1, h * w * 3, -110, 110) },
        styles: [{ image: { height: 8, width: 8, data: testImage(2, 8 * 8 * 3, -120, 120) }, weight: 1 }],
      },
    ];
    const images = testImage(3, h * w * 3, -30, 30);
    const session = await backend.createSession(options);
    await session.setTargets(targets);
    await session.setImages(images);
    const got = await session.lossAndGradient();
    const want = referenceLossAndGradient(weights, options, targets, images);
    for (const key of ['content', 'style', 'tv', 'total'] as const)
      expect(Math.abs(got.losses[0][key] - want.losses[0][key]) / want.losses[0][key], key).toBeLessThan(1e-5);
    let num = 0;
    let den = 0;
    want.gradient.forEach((g, i) => {
      num += (got.gradient[i] - g) ** 2;
      den += g * g;
    });
    expect(Math.sqrt(num / den)).toBeLessThan(1e-4);
    backend.dispose();
  });
});
