/**
 * The native CPU engine against the float64 reference (test/reference, plain
 * loops written independently of every backend) and against the TF.js
 * backend, with random full VGG-19 weights (conv1_1..conv5_1) at small odd
 * sizes, so that TF SAME pooling pads at every level.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes, adamUpdate } from '@nst/core';
import type { Backend, LossValues } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { referenceAdamTrajectory, referenceLossAndGradient } from '../../../test/reference/vgg-float64.js';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { PARITY_SIZE, PARITY_TOLERANCE, parityCases, testPicture, type ParityCase } from '../../../test/reference/parity-cases.js';
import { addon, relDiff, relL2, skipReason } from './helpers.js';

const LOSS_TOL = PARITY_TOLERANCE.loss;
const GRAD_TOL = PARITY_TOLERANCE.gradient;

const image = testPicture;

function expectLossesClose(got: readonly LossValues[], want: readonly LossValues[], tol = LOSS_TOL) {
  expect(got.length).toBe(want.length);
  got.forEach((g, b) => {
    for (const key of ['content', 'style', 'tv', 'total'] as const) {
      const d = relDiff(g[key], want[b][key]);
      if (!(d <= tol)) throw new Error(`item ${b} ${key}: native ${g[key]} vs ${want[b][key]} (relative ${d.toExponential(2)})`);
    }
  });
}

const { height: h, width: w } = PARITY_SIZE;
const cases = parityCases();

describe.skipIf(!addon)(`native cpu vs float64 reference and tfjs${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const weights = testWeights(5, 13);

  async function nativeSession(backend: Backend, c: ParityCase, images: Float32Array) {
    const session = await backend.createSession(c.options);
    await session.setTargets(c.targets);
    await session.setImages(images);
    return session;
  }

  for (const c of cases) {
    it(`loss and gradient match the float64 reference: ${c.name}`, async () => {
      const backend = await createNativeBackend('cpu');
      await backend.loadWeights(weights);
      const images = testImage(30, c.options.batch * h * w * 3);
      const session = await nativeSession(backend, c, images);
      const got = await session.lossAndGradient();
      const want = referenceLossAndGradient(weights, c.options, c.targets, images);
      expectLossesClose(got.losses, want.losses);
      expect(relL2(got.gradient, want.gradient)).toBeLessThan(GRAD_TOL);
      // iterate with no steps evaluates only, and agrees with lossAndGradient.
      const evaluated = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
      expectLossesClose(evaluated, want.losses);
      backend.dispose();
    });
  }

  // 20 updates at the notebook's lr 2.0 from one start. (This test caught
  // float(0.999) in engine.h's AdamParams: 1 - beta2 off by 5e-5 moved the
  // loss by 2e-4 after 20 steps; AdamParams is double since.)
  const adamCase: ParityCase = {
    name: 'small',
    options: { height: 12, width: 14, batch: 1, pooling: 'avg', loss: { ...DEFAULT_LOSS, tvWeight: 1e-4 } },
    targets: [{ content: image(41, 12, 14), styles: [{ image: image(42, 12, 14), weight: 1 }] }],
  };
  const adamStart = testImage(43, 12 * 14 * 3);
  const adamSteps = adamStepSizes(DEFAULT_ADAM, 1, 20);

  async function native20(backend: Backend) {
    const session = await nativeSession(backend, adamCase, adamStart);
    const progress: number[] = [];
    // One call runs the 20 updates; its result is the loss at the start.
    const first = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamSteps, onProgress: (d) => progress.push(d) });
    const images = await session.readImages();
    const state = await session.readOptimizerState();
    const after = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
    return { first, images, state, after, progress };
  }

  it('20 Adam iterations in one C++ call match core adamUpdate stepped from JS with the native gradients', async () => {
    const backend = await createNativeBackend('cpu');
    await backend.loadWeights(weights);
    const got = await native20(backend);
    expect(got.progress.at(-1)).toBe(20);

    const stepper = await nativeSession(backend, adamCase, adamStart);
    const x = Float32Array.from(adamStart);
    const m = new Float32Array(x.length);
    const v = new Float32Array(x.length);
    const losses: LossValues[][] = [];
    for (let t = 0; t < 20; t++) {
      await stepper.setImages(x);
      const r = await stepper.lossAndGradient();
      losses.push(r.losses);
      adamUpdate(x, r.gradient, m, v, adamSteps[t], DEFAULT_ADAM);
    }
    await stepper.setImages(x);
    const after = (await stepper.lossAndGradient()).losses;
    backend.dispose();

    expectLossesClose(got.first, losses[0], 1e-6);
    expectLossesClose(got.after, after, 1e-5);
    expect(relL2(got.images, x)).toBeLessThan(1e-5);
    expect(relL2(got.state.m, m)).toBeLessThan(1e-5);
    expect(relL2(got.state.v, v)).toBeLessThan(1e-5);
    // The optimisation did something: the loss fell.
    expect(got.after[0].total).toBeLessThan(0.9 * got.first[0].total);
  });

  it('20 Adam iterations stay within 1e-4 of the float64 reference trajectory', async () => {
    const backend = await createNativeBackend('cpu');
    await backend.loadWeights(weights);
    const got = await native20(backend);
    backend.dispose();

    const ref = referenceAdamTrajectory(weights, adamCase.options, adamCase.targets, adamStart, adamSteps, DEFAULT_ADAM);
    expectLossesClose(got.first, ref.first);
    expectLossesClose(got.after, ref.final, 1e-4);
    expect(relL2(got.images, ref.images)).toBeLessThan(1e-4);
  });

  // At 12x14 no layer is large enough for the Winograd path (>= 400 pixels):
  // 40x52 puts blocks 1-2 on it, and the direct-convolution tfjs backend is
  // the independent reference for the whole 20-step trajectory.
  it('20 Adam iterations at 40x52 (Winograd layers): losses within 1e-4 of the tfjs backend, images within a pixel level', async () => {
    const { createTfjsBackend } = await import('@nst/tfjs');
    const [H, W] = [40, 52];
    const c: ParityCase = {
      name: 'winograd',
      options: { height: H, width: W, batch: 1, pooling: 'avg', loss: { ...DEFAULT_LOSS, tvWeight: 1e-4 } },
      targets: [{ content: image(51, H, W), styles: [{ image: image(52, H, W), weight: 1 }] }],
    };
    const start = testImage(53, H * W * 3);
    const results = [];
    for (const backend of [await createNativeBackend('cpu'), await createTfjsBackend()]) {
      await backend.loadWeights(weights);
      const session = await nativeSession(backend, c, start);
      const first = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamSteps });
      const after = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
      results.push({ first, after, images: await session.readImages() });
      backend.dispose();
    }
    const [native, tfjs] = results;
    expectLossesClose(native.first, tfjs.first);
    expectLossesClose(native.after, tfjs.after, 1e-4);
    // Winograd's ~1e-5 gradient error is amplified by Adam's normalised step
    // (m / sqrt(v)) on the pixels whose gradient is near zero, so the images
    // drift apart more than the losses do (the direct path holds 1e-4 on the
    // image against float64 above): measured 1.2e-3 relative L2 (an RMS of
    // about 0.05 pixel levels), at most 0.8 of a level on any pixel.
    expect(relL2(native.images, tfjs.images)).toBeLessThan(2e-3);
    let maxDiff = 0;
    for (let i = 0; i < native.images.length; i++) maxDiff = Math.max(maxDiff, Math.abs(native.images[i] - tfjs.images[i]));
    console.log(
      `40x52, 20 Adam steps: image rel L2 ${relL2(native.images, tfjs.images).toExponential(2)}, max |diff| ${maxDiff.toFixed(3)} levels`,
    );
    expect(maxDiff).toBeLessThan(1.5);
    expect(native.after[0].total).toBeLessThan(0.9 * native.first[0].total);
  });

  it('matches the tfjs backend on the same session', async () => {
    const { createTfjsBackend } = await import('@nst/tfjs');
    const c = cases[0];
    const images = testImage(31, c.options.batch * h * w * 3);
    const results = [];
    for (const backend of [await createNativeBackend('cpu'), await createTfjsBackend()]) {
      await backend.loadWeights(weights);
      const session = await nativeSession(backend, c, images);
      results.push({ name: backend.detail, ...(await session.lossAndGradient()) });
      backend.dispose();
    }
    const [native, tfjs] = results;
    expectLossesClose(native.losses, tfjs.losses);
    expect(relL2(native.gradient, tfjs.gradient)).toBeLessThan(GRAD_TOL);
  });
});
