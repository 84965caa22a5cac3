/**
 * The TensorFlow.js backend against the float64 reference of
 * test/reference/vgg-float64.ts (random full-depth VGG-19 weights, tiny
 * images), against finite differences of its own loss, and against core's
 * Adam applied to the reference gradient.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { adamStepSizes, DEFAULT_ADAM, DEFAULT_LOSS, isUserError, Rng } from '@nst/core';
import type { AdamConfig, Backend, LossSpec, LossValues, Pooling, Session, SessionOptions, Targets } from '@nst/core';
import { createTfjsBackend, selectTfjsBackend } from '@nst/tfjs';
import { relL2 } from '@nst/test-helpers';
import { TfVgg } from '../src/network.js';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import {
  pool2x2,
  pool2x2Backward,
  referenceAdamTrajectory,
  referenceLossAndGradient,
  tensor3,
} from '../../../test/reference/vgg-float64.js';

const WEIGHTS = testWeights(1); // conv1_1 .. conv5_1
const LOSS_WITH_TV: LossSpec = { ...DEFAULT_LOSS, tvWeight: 0.02 };

/**
 * Targets whose statistics differ from the generated image's (wider value
 * ranges), so that G - G_S does not cancel to a few float32 ulps.
 */
function makeTargets(seed: number, h: number, w: number, styleSizes: ReadonlyArray<[number, number]>): Targets {
  const weights = styleSizes.length === 1 ? [1] : styleSizes.map((_, k) => (k === 0 ? 0.7 : 0.3 / (styleSizes.length - 1)));
  return {
    content: { height: h, width: w, data: testImage(seed, h * w * 3, -110, 110) },
    styles: styleSizes.map(([sh, sw], k) => ({
      image: { height: sh, width: sw, data: testImage(seed + 1 + k, sh * sw * 3, -120 + 40 * k, 120) },
      weight: weights[k],
    })),
  };
}

function expectLossesClose(got: readonly LossValues[], want: readonly LossValues[], rel: number): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, b) => {
    for (const key of ['content', 'style', 'tv', 'total'] as const) {
      const scale = Math.max(Math.abs(want[b][key]), 1e-30);
      expect(Math.abs(g[key] - want[b][key]) / scale, `item ${b} ${key}: ${g[key]} vs ${want[b][key]}`).toBeLessThan(rel);
    }
  });
}

let backend: Backend;

beforeAll(async () => {
  backend = await createTfjsBackend();
  console.log(`tfjs tests run on ${backend.detail}`);
  await backend.loadWeights(WEIGHTS);
});

afterAll(() => backend?.dispose());

async function openSession(options: SessionOptions, targets: readonly Targets[], images: Float32Array): Promise<Session> {
  const session = await backend.createSession(options);
  await session.setTargets(targets);
  await session.setImages(images);
  return session;
}

describe('tfjs backend selection', () => {
  it('runs the fastest engine that starts and says why the faster ones did not', async () => {
    const selection = await selectTfjsBackend();
    expect(backend.name).toBe('tfjs');
    expect(backend.detail).toBe(selection.detail);
    const tfjsNodeLoads = await import('@tensorflow/tfjs-node' as string).then(
      () => true,
      () => false,
    );
    expect.assertions(tfjsNodeLoads ? 4 : 8);
    if (tfjsNodeLoads) {
      expect(selection.kind).toBe('node');
    } else {
      expect(selection.kind).toBe('wasm');
      expect(selection.rejected.map((r) => r.kind)).toEqual(['node']);
      expect(selection.rejected[0].reason.length).toBeGreaterThan(0);
      // All cores (the pool is capped at 8 by the package).
      const cores = Math.min(8, (await import('node:os')).availableParallelism());
      expect(selection.threads).toBe(cores);
      expect(selection.detail).toBe(`tfjs (wasm, ${cores} thread${cores === 1 ? '' : 's'})`);
    }
    expect(tf.getBackend()).toBe({ node: 'tensorflow', wasm: 'wasm', cpu: 'cpu' }[selection.kind]);
  });
});

describe('TF SAME 2x2 pooling', () => {
  // Pooling always follows a ReLU: test relu -> pool, forward and backward.
  for (const pooling of ['avg', 'max'] as const) {
    it(`${pooling}: forward and gradient match the reference at odd sizes`, () => {
      const vgg = new TfVgg(tf, testWeights(2, 1));
      const rng = new Rng(8);
      for (const [h, w] of [
        [5, 7],
        [6, 9],
        [7, 4],
        [1, 3],
        [3, 1],
      ]) {
        const x = rng.fillUniform(new Float32Array(h * w * 4), -1, 3);
        const [oh, ow] = [Math.ceil(h / 2), Math.ceil(w / 2)];
        const dy = rng.fillUniform(new Float32Array(oh * ow * 4), -1, 1);
        const { y, dx } = tf.tidy(() => {
          const xt = tf.tensor4d(x, [1, h, w, 4]);
          const dyt = tf.tensor4d(dy, [1, oh, ow, 4]);
          const reluPool = (t: tf.Tensor) => vgg.pool(tf.relu(t as tf.Tensor4D), pooling);
          const y = reluPool(xt).dataSync();
          const dx = tf
            .grad((t) => tf.sum(tf.mul(reluPool(t), dyt)))(xt)
            .dataSync();
          return { y, dx };
        });
        const a = tensor3(
          h,
          w,
          4,
          x.map((e) => Math.max(e, 0)),
        );
        const ref = pool2x2(a, pooling);
        const refGrad = pool2x2Backward(a, tensor3(oh, ow, 4, dy), pooling).data.map((g, i) => (x[i] > 0 ? g : 0));
        expect(relL2(y, ref.data)).toBeLessThan(1e-6);
        expect(relL2(dx, refGrad)).toBeLessThan(1e-6);
      }
      vgg.dispose();
    });
  }
});

describe('loss and gradient vs the float64 reference (random VGG-19 to conv5_1)', () => {
  const cases: Array<{
    name: string;
    pooling: Pooling;
    h: number;
    w: number;
    batch: number;
    styles: Array<[number, number]>;
    loss: LossSpec;
  }> = [
    {
      name: 'avg, 11x13, batch 2, 2 blended styles, TV',
      pooling: 'avg',
      h: 11,
      w: 13,
      batch: 2,
      styles: [
        [9, 15],
        [11, 13],
      ],
      loss: LOSS_WITH_TV,
    },
    {
      name: 'max, 11x13, batch 2, 2 blended styles, TV',
      pooling: 'max',
      h: 11,
      w: 13,
      batch: 2,
      styles: [
        [13, 10],
        [11, 13],
      ],
      loss: LOSS_WITH_TV,
    },
    { name: 'avg, 16x16, batch 1, default loss', pooling: 'avg', h: 16, w: 16, batch: 1, styles: [[16, 16]], loss: DEFAULT_LOSS },
    { name: 'max, 9x17, batch 1, one style', pooling: 'max', h: 9, w: 17, batch: 1, styles: [[12, 12]], loss: DEFAULT_LOSS },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const options: SessionOptions = { height: c.h, width: c.w, batch: c.batch, pooling: c.pooling, loss: c.loss };
      const targets = Array.from({ length: c.batch }, (_, b) => makeTargets(100 * (b + 1), c.h, c.w, c.styles));
      const images = testImage(7, c.batch * c.h * c.w * 3, -30, 30);
      const session = await openSession(options, targets, images);
      const got = await session.lossAndGradient();
      session.dispose();
      const want = referenceLossAndGradient(WEIGHTS, options, targets, images);
      expectLossesClose(got.losses, want.losses, 1e-5);
      expect(relL2(got.gradient, want.gradient)).toBeLessThan(1e-4);
      if (c.batch > 1) {
        // Items really have their own targets and gradients.
        expect(got.losses[0].total).not.toBeCloseTo(got.losses[1].total, 0);
        const n = c.h * c.w * 3;
        expect(relL2(got.gradient.subarray(0, n), want.gradient.subarray(0, n))).toBeLessThan(1e-4);
        expect(relL2(got.gradient.subarray(n), want.gradient.subarray(n))).toBeLessThan(1e-4);
      }
    });
  }
});

describe('gradient vs central finite differences of the backend loss (float32)', () => {
  // J is about 1e7 (avg) to 1e8 (max) here, and float32 resolves it to about
  // 1e-7 relative. A random direction's derivative is about 1e3, so its finite
  // difference would be mostly rounding noise; along the gradient restricted
  // to a random half of the pixels (d_i = g_i m_i / max|g|) the derivative is
  // 2e4..3e5. FD measures (true gradient) . d, so a wrong component of g shows
  // up as a mismatch with g . d. Steps: avg 0.1 (pixels span +-30) resolves it
  // to ~3e-4; max pooling's argmax switches bend J already at steps of 0.03
  // (0.3% there, in float64 too), so max uses 0.01, where rounding allows ~3e-3.
  const settings = { avg: { step: 0.1, tolerance: 2e-3 }, max: { step: 0.01, tolerance: 5e-3 } };
  for (const pooling of ['avg', 'max'] as const) {
    it(`agrees along masked gradient directions (${pooling}, 10x12, full depth, TV)`, async () => {
      const { step, tolerance } = settings[pooling];
      const [h, w] = [10, 12];
      const options: SessionOptions = { height: h, width: w, batch: 1, pooling, loss: LOSS_WITH_TV };
      const x = testImage(21, h * w * 3, -30, 30);
      const session = await openSession(options, [makeTargets(5, h, w, [[10, 12]])], x);
      const { gradient } = await session.lossAndGradient();
      const lossAt = async (image: Float32Array) => {
        await session.setImages(image);
        return (await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) }))[0].total;
      };
      const rng = new Rng(77);
      const gmax = Math.max(...gradient.map(Math.abs));
      for (let k = 0; k < 3; k++) {
        const d = gradient.map((g) => (rng.uniform() < 0.5 ? g / gmax : 0));
        const fd = ((await lossAt(x.map((v, i) => v + step * d[i]))) - (await lossAt(x.map((v, i) => v - step * d[i])))) / (2 * step);
        const analytic = gradient.reduce((s, g, i) => s + g * d[i], 0);
        expect(Math.abs(fd - analytic) / Math.abs(analytic), `finite difference ${fd}, gradient ${analytic}`).toBeLessThan(tolerance);
      }
      session.dispose();
    });
  }
});

describe('Adam through the seam', () => {
  // The notebook's settings, and settings where eps is comparable to sqrt(v)
  // (so its placement, sqrt(v) + eps, matters) and the betas differ.
  const configs: Array<[string, AdamConfig]> = [
    ['defaults', DEFAULT_ADAM],
    ['large eps, other betas', { lr: 0.5, beta1: 0.8, beta2: 0.99, eps: 10 }],
  ];
  for (const [label, adam] of configs) {
    it(`3 iterations match core adamUpdate applied to the reference gradient (${label})`, async () => {
      const [h, w, batch] = [9, 11, 2];
      const options: SessionOptions = { height: h, width: w, batch, pooling: 'avg', loss: LOSS_WITH_TV };
      const targets = [
        makeTargets(300, h, w, [[9, 11]]),
        makeTargets(400, h, w, [
          [7, 12],
          [9, 11],
        ]),
      ];
      const x0 = testImage(9, batch * h * w * 3, -30, 30);
      const stepSizes = adamStepSizes(adam, 1, 3);

      // Reference: float64 gradient, core's float64 Adam.
      const ref = referenceAdamTrajectory(WEIGHTS, options, targets, x0, stepSizes, adam);
      const x = ref.images;

      const session = await openSession(options, targets, x0);
      const first = await session.iterate({ adam, stepSizes });
      const final = await session.iterate({ adam, stepSizes: new Float32Array(0) });
      expectLossesClose(first, ref.first, 1e-5);
      // Three updates of about lr each: the images agree to float32 accuracy.
      const images = await session.readImages();
      expect(Math.max(...images.map((g, i) => Math.abs(g - x[i])))).toBeLessThan(1e-3);
      expect(relL2(images, x)).toBeLessThan(1e-5);
      expectLossesClose(final, ref.final, 1e-4);
      const state = await session.readOptimizerState();
      expect(relL2(state.m, ref.m)).toBeLessThan(1e-4);
      expect(relL2(state.v, ref.v)).toBeLessThan(1e-4);
      // The loss went down.
      for (let b = 0; b < batch; b++) expect(final[b].total).toBeLessThan(first[b].total);
      session.dispose();
    });
  }

  it('optimizer state round-trips and setImages zeroes it', async () => {
    const [h, w] = [6, 5];
    const options: SessionOptions = { height: h, width: w, batch: 1, pooling: 'max', loss: DEFAULT_LOSS };
    const session = await openSession(options, [makeTargets(1, h, w, [[6, 5]])], testImage(2, h * w * 3));
    await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, 2) });
    const state = await session.readOptimizerState();
    expect(state.v.some((e) => e > 0)).toBe(true);
    await session.setImages(testImage(2, h * w * 3));
    expect((await session.readOptimizerState()).m.every((e) => e === 0)).toBe(true);
    await session.writeOptimizerState(state);
    expect(await session.readOptimizerState()).toEqual(state);
    session.dispose();
  });
});

describe('resources and errors', () => {
  it('leaks no tensors across iterate calls, and frees everything on dispose', async () => {
    const before = tf.memory().numTensors;
    const own = await createTfjsBackend();
    await own.loadWeights(WEIGHTS);
    const [h, w] = [8, 10];
    const options: SessionOptions = { height: h, width: w, batch: 2, pooling: 'avg', loss: LOSS_WITH_TV };
    const targets = [
      makeTargets(1, h, w, [[8, 10]]),
      makeTargets(2, h, w, [
        [9, 9],
        [8, 10],
      ]),
    ];
    const session = await own.createSession(options);
    await session.setTargets(targets);
    await session.setImages(testImage(3, 2 * h * w * 3));
    const step = (first: number) => ({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, first, 2) });
    await session.iterate(step(1));
    const steady = tf.memory().numTensors;
    let progress = 0;
    await session.iterate({ ...step(3), onProgress: (done) => (progress = done) });
    expect(progress).toBe(2);
    expect(tf.memory().numTensors).toBe(steady);
    await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
    await session.lossAndGradient();
    await session.readImages();
    await session.readOptimizerState();
    await session.setTargets(targets);
    expect(tf.memory().numTensors).toBe(steady);
    own.dispose(); // disposes the session too
    expect(tf.memory().numTensors).toBe(before);
  });

  it('asking for a layer the weight set lacks names the layer and what the set has', async () => {
    const small = await createTfjsBackend();
    await small.loadWeights(testWeights(3, 5)); // conv1_1 .. conv3_1
    const error = await small.createSession({ height: 8, width: 8, batch: 1, pooling: 'avg', loss: DEFAULT_LOSS }).catch((e) => e);
    expect(isUserError(error)).toBe(true);
    expect([error.field, error.detail]).toEqual([
      'contentLayers',
      'layer conv4_2 is not in the weight set test:3 (it has conv1_1 .. conv3_1)',
    ]);
    small.dispose();
  });

  it('rejects sizes that do not match the session', async () => {
    const session = await backend.createSession({ height: 4, width: 4, batch: 1, pooling: 'avg', loss: DEFAULT_LOSS });
    await expect(session.setImages(new Float32Array(10))).rejects.toThrow(/1x4x4x3/);
    await expect(session.setTargets([makeTargets(1, 4, 5, [[4, 4]])])).rejects.toThrow(/content image is 5x4/);
    await expect(session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) })).rejects.toThrow(/setTargets/);
    session.dispose();
  });
});
