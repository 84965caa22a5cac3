/**
 * The native CPU engine with the real Keras VGG-19 weights (blocks 1-3 from
 * ../shared, never committed) against the float64 reference and tfjs.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAM, adamStepSizes } from '@nst/core';
import type { LossValues, SessionOptions, Targets } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { createTfjsBackend } from '@nst/tfjs';
import { loadWeights } from '@nst/weights';
import { referenceAdamTrajectory, referenceLossAndGradient } from '../../../test/reference/vgg-float64.js';
import { testImage } from '../../../test/reference/random-weights.js';
import { REDUCED_LOSS, sharedAvailable, sharedWeights as weightsPath } from '@nst/test-helpers';
import { addon, relDiff, relL2, skipReason } from './helpers.js';

const haveWeights = sharedAvailable('weights');
const reason = skipReason || (haveWeights ? '' : `${weightsPath} absent`);

const options: SessionOptions = {
  height: 26,
  width: 31,
  batch: 1,
  pooling: 'avg',
  loss: { ...REDUCED_LOSS, tvWeight: 1e-3 },
};

// Images in the caffe input space (0..255 minus the mean pixel).
const img = (seed: number, h: number, w: number) => ({ height: h, width: w, data: testImage(seed, h * w * 3, -110, 130) });
const targets: Targets[] = [{ content: img(1, 26, 31), styles: [{ image: img(2, 21, 33), weight: 1 }] }];
const images = testImage(3, 26 * 31 * 3, -110, 130);

function expectClose(got: LossValues, want: LossValues) {
  for (const key of ['content', 'style', 'tv', 'total'] as const) expect(relDiff(got[key], want[key]), key).toBeLessThan(1e-5);
}

describe.skipIf(!addon || !haveWeights)(`native cpu with the real VGG-19 weights${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('loss and gradient match the float64 reference and tfjs', async () => {
    const weights = await loadWeights(weightsPath);
    expect(weights.layers.length).toBe(8);
    const want = referenceLossAndGradient(weights, options, targets, images);
    for (const backend of [await createNativeBackend('cpu'), await createTfjsBackend()]) {
      await backend.loadWeights(weights);
      const session = await backend.createSession(options);
      await session.setTargets(targets);
      await session.setImages(images);
      const got = await session.lossAndGradient();
      backend.dispose();
      expectClose(got.losses[0], want.losses[0]);
      expect(relL2(got.gradient, want.gradient), backend.detail).toBeLessThan(1e-4);
    }
  });

  it('20 Adam iterations stay within 1e-4 of the float64 reference trajectory', async () => {
    const weights = await loadWeights(weightsPath);
    const steps = adamStepSizes(DEFAULT_ADAM, 1, 20);
    const backend = await createNativeBackend('cpu');
    await backend.loadWeights(weights);
    const session = await backend.createSession(options);
    await session.setTargets(targets);
    await session.setImages(images);
    const first = (await session.iterate({ adam: DEFAULT_ADAM, stepSizes: steps }))[0];
    const got = await session.readImages();
    const after = (await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) }))[0];
    backend.dispose();

    const ref = referenceAdamTrajectory(weights, options, targets, images, steps, DEFAULT_ADAM);
    const afterRef = ref.final[0];
    expectClose(first, ref.first[0]);
    console.log(
      `real weights, 20 Adam steps: loss rel diff ${relDiff(after.total, afterRef.total).toExponential(2)}, image rel L2 ${relL2(got, ref.images).toExponential(2)}`,
    );
    for (const key of ['content', 'style', 'tv', 'total'] as const) expect(relDiff(after[key], afterRef[key]), key).toBeLessThan(1e-4);
    expect(relL2(got, ref.images)).toBeLessThan(1e-4);
    expect(after.total).toBeLessThan(0.9 * first.total);
  });

  it('refuses a loss deeper than the weight set with a one-line UserError', async () => {
    const backend = await createNativeBackend('cpu');
    await backend.loadWeights(await loadWeights(weightsPath));
    await expect(
      backend.createSession({ ...options, loss: { ...options.loss, contentLayers: [{ layer: 'conv4_2', weight: 1 }] } }),
    ).rejects.toThrow(/^contentLayers: layer conv4_2 is not in the weight set .*vgg19-keras-blocks1-3 \(it has conv1_1 \.\. conv3_4\)$/);
    backend.dispose();
  });
});
