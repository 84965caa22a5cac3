/**
 * The L-BFGS check with the real VGG-19 weights (blocks 1-3 from ../shared)
 * at 64x48 on the example pair (tubingen, starry_night), for any backend:
 * its first step is along the float64 reference's steepest descent from the
 * float64 loss, and over the same number of loss evaluations it ends lower
 * than Adam. Used by lbfgs-real-weights.test.ts and lbfgs-cuda-emulated.test.ts.
 */
import { expect } from 'vitest';
import {
  DEFAULT_ADAM,
  adamStepSizes,
  hostLbfgs,
  initialImage,
  toNetworkSpace,
  type Backend,
  type SessionOptions,
  type Targets,
  type WeightSet,
} from '@nst/core';
import { loadNativeAddon } from '@nst/native';
import { loadImage } from '@nst/job';
import { loadWeights } from '@nst/weights';
import path from 'node:path';
import { sharedImages, sharedWeights } from '@nst/test-helpers';
import { referenceLossAndGradient } from './reference/vgg-float64.js';

const options: SessionOptions = {
  height: 48,
  width: 64,
  batch: 1,
  pooling: 'avg',
  loss: {
    contentLayers: [{ layer: 'conv3_2', weight: 1 }],
    styleLayers: ['conv1_1', 'conv2_1', 'conv3_1'].map((layer) => ({ layer, weight: 1 / 3 })),
    alpha: 10,
    beta: 40,
    tvWeight: 0,
  },
};

interface Case {
  weights: WeightSet;
  targets: Targets[];
  x0: Float32Array;
  ref: { total: number; gradient: Float64Array };
}

let shared: Case | undefined;
async function setup(): Promise<Case> {
  if (shared) return shared;
  const weights = await loadWeights(sharedWeights);
  const size = { width: options.width, height: options.height };
  const content = toNetworkSpace(await loadImage(path.join(sharedImages, 'tubingen.jpg'), 'content', size), weights.preprocessing);
  const style = toNetworkSpace(await loadImage(path.join(sharedImages, 'starry_night.jpg'), 'style', size), weights.preprocessing);
  const targets = [{ content, styles: [{ image: style, weight: 1 }] }];
  const x0 = initialImage({ kind: 'noise', noiseRatio: 0.6 }, content, weights.preprocessing, 0);
  const r = referenceLossAndGradient(weights, options, targets, x0);
  shared = { weights, targets, x0, ref: { total: r.losses[0].total, gradient: r.gradient } };
  return shared;
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

export async function checkLbfgs(open: () => Promise<Backend>, iterations: number): Promise<void> {
  const c = await setup();
  const backend = await open();
  try {
    await backend.loadWeights(c.weights);
    const session = await backend.createSession(options);
    await session.setTargets(c.targets);
    await session.setImages(c.x0);
    const run = await hostLbfgs(session, { history: 100 });
    const first = (await run.iterate(1))[0];
    const x1 = await session.readImages();
    // The first L-BFGS step is steepest descent: along -gradient of the float64 reference.
    const step = x1.map((v, i) => v - c.x0[i]);
    const cos = cosine(
      step,
      c.ref.gradient.map((g) => -g),
    );
    expect(Math.abs(first.total - c.ref.total) / c.ref.total).toBeLessThan(1e-4);
    expect(cos).toBeGreaterThan(0.9999);
    await run.iterate(iterations - 1);
    const lbfgsLoss = (await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) }))[0].total;
    const evaluations = run.evaluations;

    await session.setImages(c.x0);
    await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, evaluations) });
    const adamLoss = (await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) }))[0].total;
    session.dispose();
    console.log(
      `${backend.detail}: start ${first.total.toExponential(4)} (float64 ${c.ref.total.toExponential(4)}), first step cos ${cos.toFixed(6)}; ` +
        `after ${evaluations} evaluations: L-BFGS (${iterations} iterations) ${lbfgsLoss.toExponential(4)}, Adam ${adamLoss.toExponential(4)}`,
    );
    expect(evaluations).toBeGreaterThanOrEqual(iterations);
    expect(lbfgsLoss).toBeLessThan(adamLoss);
  } finally {
    backend.dispose();
  }
}

/** Why the cuda engine does not load here ('' when it does). */
export function cudaUnavailable(): string {
  const loaded = loadNativeAddon();
  if (!loaded.ok) return loaded.reason;
  try {
    loaded.addon.createEngine('cuda', { precision: 'fp32' }).dispose();
    return '';
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}
