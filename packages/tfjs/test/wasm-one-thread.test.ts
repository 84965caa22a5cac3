/**
 * wasm with threads: 1 takes the package's own single-threaded path (its own
 * file: one TensorFlow.js engine per process), and computes what the
 * multi-threaded build computes (tested in tfjs-backend.test.ts).
 */
import { expect, it } from 'vitest';
import { DEFAULT_LOSS } from '@nst/core';
import { createTfjsBackend } from '@nst/tfjs';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { referenceLossAndGradient } from '../../../test/reference/vgg-float64.js';

it('wasm with 1 thread runs and matches the reference loss', async () => {
  const backend = await createTfjsBackend({ prefer: 'wasm', threads: 1 });
  expect(backend.detail).toBe('tfjs (wasm, 1 thread)');
  const weights = testWeights(5, 5);
  await backend.loadWeights(weights);
  const options = {
    height: 6,
    width: 7,
    batch: 1,
    pooling: 'avg' as const,
    loss: { ...DEFAULT_LOSS, contentLayers: [{ layer: 'conv2_2', weight: 1 }], styleLayers: [{ layer: 'conv3_1', weight: 1 }] },
  };
  const targets = [
    {
      content: { height: 6, width: 7, data: testImage(1, 126, -110, 110) },
      styles: [{ image: { height: 5, width: 5, data: testImage(2, 75, -120, 120) }, weight: 1 }],
    },
  ];
  const session = await backend.createSession(options);
  await session.setTargets(targets);
  await session.setImages(testImage(3, 126, -30, 30));
  const [got] = await session.iterate({ adam: { lr: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, stepSizes: new Float32Array(0) });
  const [want] = referenceLossAndGradient(weights, options, targets, testImage(3, 126, -30, 30)).losses;
  expect(Math.abs(got.total - want.total) / want.total).toBeLessThan(1e-5);
  backend.dispose();
});
