/**
 * The temporal term of video (Ruder et al. 2016; core's loss.ts):
 *   J_temporal = (1/D) sum_p c(p) sum_ch (x - omega)^2,  D = H W 3,  dJ/dx = 2 c (x - omega) / D
 * in the float64 reference (against finite differences and a hand sum), then
 * on the cpu engine and the TF.js backend against the reference, in a batch
 * whose items have a temporal target or none (a video's first frame), with
 * random VGG-19 weights (blocks 1-3) at an odd size. The cuda engine (on its CPU
 * stand-in) has the same checks in test/video-temporal-cuda-emulated.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAM, type Backend, type LossSpec, type LossValues, type SessionOptions } from '@nst/core';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { createTfjsBackend } from '@nst/tfjs';
import { available, relDiff, relL2 } from '@nst/test-helpers';
import { testImage } from './random-weights.js';
import { referenceLossAndGradient, temporalLoss, tensor3 } from './vgg-float64.js';
import { H, W, WEIGHTS, OPTIONS, TARGETS, IMAGES } from './temporal-cases.js';

describe('the temporal term in the float64 reference', () => {
  it('is (1/D) sum c (x - omega)^2, and its gradient matches central differences', () => {
    const x = tensor3(3, 4, 3, testImage(1, 36, -5, 5));
    const omega = testImage(2, 36, -5, 5);
    const c = Float64Array.from([0, 1, 0.5, 0.25, 1, 1, 0, 0.75, 1, 0.1, 0.9, 1]);
    const { loss, grad } = temporalLoss(x, omega, c);
    let sum = 0;
    for (let p = 0; p < 12; p++) for (let ch = 0; ch < 3; ch++) sum += c[p] * (x.data[3 * p + ch] - omega[3 * p + ch]) ** 2;
    expect(loss).toBeCloseTo(sum / 36, 12);
    const h = 1e-6;
    for (let k = 0; k < 36; k++) {
      const up = tensor3(3, 4, 3, x.data);
      const down = tensor3(3, 4, 3, x.data);
      up.data[k] += h;
      down.data[k] -= h;
      const fd = (temporalLoss(up, omega, c).loss - temporalLoss(down, omega, c).loss) / (2 * h);
      expect(Math.abs(fd - grad[k])).toBeLessThan(1e-8);
    }
  });

  it('adds temporalWeight x J_temporal to the total and its gradient to the image gradient; an item without a target has none', () => {
    const without = { ...OPTIONS, loss: { ...OPTIONS.loss, temporalWeight: 0 } };
    const a = referenceLossAndGradient(WEIGHTS, OPTIONS, TARGETS, IMAGES);
    const b = referenceLossAndGradient(WEIGHTS, without, TARGETS, IMAGES);
    const n = H * W * 3;
    for (const item of [0, 1, 2]) {
      const t = TARGETS[item].temporal;
      const own = t ? temporalLoss(tensor3(H, W, 3, IMAGES.subarray(item * n, (item + 1) * n)), t.image.data, t.weights) : undefined;
      expect(a.losses[item].temporal).toBe(own?.loss ?? 0);
      expect(a.losses[item].total).toBeCloseTo(b.losses[item].total + 4e3 * (own?.loss ?? 0), 6);
      for (let k = 0; k < n; k++) expect(a.gradient[item * n + k]).toBeCloseTo(b.gradient[item * n + k] + 4e3 * (own?.grad[k] ?? 0), 9);
    }
    expect(a.losses[0].temporal).toBeGreaterThan(0);
    expect(b.losses[0].temporal).toBeUndefined();
  });
});

function expectLossesClose(got: readonly LossValues[], want: readonly LossValues[], tol: number) {
  got.forEach((g, b) => {
    for (const key of ['content', 'style', 'tv', 'temporal', 'total'] as const) {
      const d = Math.abs(g[key]! - want[b][key]!) / Math.max(Math.abs(want[b][key]!), 1e-30);
      if (!(d <= tol) && !(want[b][key] === 0 && g[key] === 0))
        throw new Error(`item ${b} ${key}: ${g[key]} vs ${want[b][key]} (relative ${d.toExponential(2)})`);
    }
  });
}

async function checkBackend(backend: Backend, tol: { loss: number; grad: number }) {
  await backend.loadWeights(WEIGHTS);
  const session = await backend.createSession(OPTIONS);
  await session.setTargets(TARGETS);
  await session.setImages(IMAGES);
  const got = await session.lossAndGradient();
  const want = referenceLossAndGradient(WEIGHTS, OPTIONS, TARGETS, IMAGES);
  expectLossesClose(got.losses, want.losses, tol.loss);
  expect(relL2(got.gradient, want.gradient)).toBeLessThan(tol.grad);
  // The temporal term's own share of the gradient, for an item with a target: the same check without the others.
  const evaluated = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
  expectLossesClose(evaluated, want.losses, tol.loss);
  // Without a temporal weight the losses carry no temporal term, as before video.
  const plain = await backend.createSession({ ...OPTIONS, loss: { ...OPTIONS.loss, temporalWeight: 0 } });
  await plain.setTargets(TARGETS);
  await plain.setImages(IMAGES);
  const [first] = (await plain.lossAndGradient()).losses;
  expect(first.temporal).toBeUndefined();
  expect(relDiff(first.total, want.losses[0].total - 4e3 * want.losses[0].temporal!)).toBeLessThan(tol.loss * 10);
  session.dispose();
  plain.dispose();
  backend.dispose();
}

const native = available(loadNativeAddon().ok, 'temporal term on the cpu engine: the native addon is not built');

describe('the temporal term on every backend, against the reference', () => {
  it.skipIf(!native)('cpu engine', async () => {
    await checkBackend(await createNativeBackend('cpu'), { loss: 1e-5, grad: 1e-4 });
  });

  it('tfjs', async () => {
    await checkBackend(await createTfjsBackend(), { loss: 1e-4, grad: 1e-3 });
  });

  it('the temporal term pulls each pixel toward its target by its weight: one Adam step moves a weight-1 pixel of a temporal-only loss toward omega', async () => {
    // alpha = beta = 0 but a temporal weight: only J_temporal moves the image; weight-0 pixels stay.
    const loss: LossSpec = {
      contentLayers: [{ layer: 'conv1_1', weight: 1 }],
      styleLayers: [],
      alpha: 0,
      beta: 0,
      tvWeight: 0,
      temporalWeight: 1,
    };
    const options: SessionOptions = { height: H, width: W, batch: 1, pooling: 'avg', loss };
    const t = TARGETS[0];
    const backend = native ? await createNativeBackend('cpu') : await createTfjsBackend();
    await backend.loadWeights(WEIGHTS);
    const session = await backend.createSession(options);
    await session.setTargets([t]);
    const start = IMAGES.slice(0, H * W * 3);
    await session.setImages(start);
    await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array([1]) });
    const after = await session.readImages();
    for (let p = 0; p < H * W; p++)
      for (let c = 0; c < 3; c++) {
        const k = 3 * p + c;
        const toward = Math.sign(t.temporal!.image.data[k] - start[k]);
        if (t.temporal!.weights[p] === 0) expect(after[k]).toBe(start[k]);
        else if (toward !== 0) expect(Math.sign(after[k] - start[k])).toBe(toward);
      }
    session.dispose();
    backend.dispose();
  });
});
