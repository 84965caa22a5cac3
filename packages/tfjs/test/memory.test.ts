/**
 * The tfjs backend's memory estimate against TensorFlow.js's own count of the
 * bytes it held at its peak (tf.profile), on the wasm kernels (the
 * same tensors on every TensorFlow.js engine). The estimate may err high, not
 * low: it must cover the peak, and not by more than 3x.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes } from '@nst/core';
import type { SessionOptions, Targets } from '@nst/core';
import { createTfjsBackend } from '@nst/tfjs';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';

describe('tfjs memory estimate', () => {
  // Blocks 1-3 (as the reduced real weights); sizes where activations, style images and weights each dominate.
  const loss = {
    ...DEFAULT_LOSS,
    contentLayers: [{ layer: 'conv3_2', weight: 1 }],
    styleLayers: ['conv1_1', 'conv2_1', 'conv3_1'].map((layer) => ({ layer, weight: 1 / 3 })),
  };
  for (const [h, w, sh, sw, batch] of [
    [96, 128, 96, 128, 1],
    [64, 48, 128, 96, 2],
    [12, 16, 12, 16, 1],
  ]) {
    it(`covers the measured peak at ${w}x${h}, batch ${batch}, style ${sw}x${sh}`, async () => {
      const backend = await createTfjsBackend({ prefer: 'wasm' });
      const weights = testWeights(4, 6);
      const baseline = tf.memory().numBytes; // what earlier tests left to the engine
      const options: SessionOptions = { height: h, width: w, batch, pooling: 'avg', loss };
      const targets: Targets[] = Array.from({ length: batch }, (_, b) => ({
        content: { height: h, width: w, data: testImage(1 + b, h * w * 3, -110, 110) },
        styles: [{ image: { height: sh, width: sw, data: testImage(9, sh * sw * 3, -120, 120) }, weight: 1 }],
      }));
      const info = await tf.profile(async () => {
        await backend.loadWeights(weights);
        const session = await backend.createSession(options);
        await session.setTargets(targets);
        await session.setImages(testImage(3, batch * h * w * 3, -30, 30));
        await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, 2) });
        session.dispose();
      });
      // peakBytes is the most TensorFlow.js held in all during the call (the weights included).
      const measured = info.peakBytes - baseline;
      const estimate = backend.estimateMemory({
        height: h,
        width: w,
        batch,
        pooling: 'avg',
        loss,
        styleSizes: [{ height: sh, width: sw }],
      });
      console.log(
        `tfjs ${w}x${h} b${batch} style ${sw}x${sh}: measured peak ${measured} bytes, estimate ${estimate} (${(estimate / measured).toFixed(2)}x)`,
      );
      expect(estimate).toBeGreaterThanOrEqual(measured);
      expect(estimate).toBeLessThan(3 * measured);
      backend.dispose();
    });
  }
});
