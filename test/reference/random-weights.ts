/**
 * Seeded random VGG-19 weights for tests: the real shapes of conv1_1 ..
 * layers[numLayers - 1], He-initialised kernels (normal, std sqrt(2 / (9 in)),
 * so activations keep their scale through the ReLUs) and small random biases.
 */
import { PREPROCESSING, Rng, VGG19_LAYERS } from '@nst/core';
import type { ConvWeights, WeightSet } from '@nst/core';

export function testWeights(seed: number, numLayers: number = 13): WeightSet {
  if (numLayers < 1 || numLayers > VGG19_LAYERS.length) throw new Error(`testWeights: numLayers ${numLayers} not in 1..16`);
  const rng = new Rng(seed);
  const layers: ConvWeights[] = VGG19_LAYERS.slice(0, numLayers).map((info) => {
    const kernel = rng.fillNormal(new Float32Array(9 * info.inChannels * info.outChannels), Math.sqrt(2 / (9 * info.inChannels)));
    const bias = rng.fillUniform(new Float32Array(info.outChannels), -0.05, 0.05);
    return { name: info.name, inChannels: info.inChannels, outChannels: info.outChannels, kernel, bias };
  });
  return { layers, preprocessing: PREPROCESSING.caffeBgr, source: `test:${seed}`, format: 'random' };
}

/** A seeded image (or batch of images) with values uniform in [-lo, hi): network input space. */
export function testImage(seed: number, length: number, lo = -50, hi = 50): Float32Array {
  return new Rng(seed).fillUniform(new Float32Array(length), lo, hi);
}
