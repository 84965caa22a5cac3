/**
 * The case on which the temporal term (video) is held to the float64
 * reference, by the reference's own test against finite differences
 * (temporal-float64.test.ts) and by the engines' (the cuda stand-in:
 * test/video-temporal-cuda-emulated.test.ts): a batch of 3 at 13x17 whose
 * items 0 and 2 have a temporal target (other weights, another target) and
 * item 1 has none; pixel weights of every kind, 0 (occluded), 1 and between.
 */
import { Rng, type LossSpec, type SessionOptions, type Targets } from '@nst/core';
import { testImage, testWeights } from './random-weights.js';

export const [H, W] = [13, 17];
/** conv1_1 .. conv3_1: the temporal term is in pixel space, the depth is beside the point. */
export const WEIGHTS = testWeights(9, 5);
const LOSS: LossSpec = {
  contentLayers: [{ layer: 'conv2_2', weight: 1 }],
  styleLayers: ['conv1_1', 'conv2_1', 'conv3_1'].map((layer) => ({ layer, weight: 1 / 3 })),
  alpha: 10,
  beta: 40,
  tvWeight: 1e-3,
  temporalWeight: 4e3,
};
export const OPTIONS: SessionOptions = { height: H, width: W, batch: 3, pooling: 'avg', loss: LOSS };

export function pixelWeights(seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: H * W }, () => Math.min(1, Math.max(0, rng.range(-0.5, 1.5))));
}

const image = (seed: number, h = H, w = W) => ({ height: h, width: w, data: testImage(seed, h * w * 3, -110, 110) });

export const TARGETS: Targets[] = [0, 1, 2].map((b) => ({
  content: image(10 + b),
  styles: [{ image: image(20 + b, 11, 19), weight: 1 }],
  temporal: b === 1 ? undefined : { image: image(30 + b), weights: pixelWeights(40 + b) },
}));
export const IMAGES = testImage(50, 3 * H * W * 3, -100, 100);
