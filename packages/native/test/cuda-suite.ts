/**
 * The cuda engine against the cpu engine (the reference) on random full
 * VGG-19 weights (conv1_1..conv5_1, the default loss plus TV): loss and
 * gradient parity in fp32 and tf32 at 64x64 and 256x256, 20 Adam
 * iterations, and a batch of 4 against 4 single runs.
 *
 * Registered by cuda.test.ts (a real GPU) and by cuda-emulated.test.ts (the
 * CPU stand-in, NST_CUDA_EMULATION=1, at smaller sizes so CI stays quick).
 *
 * Without a GPU (or without cuDNN/cuBLAS) the parity tests skip with the
 * reason printed, and the first test checks that asking for the cuda backend
 * fails with one line saying why. bench/gpu/run.sh runs this file on a lent
 * GPU machine (bundled with a tiny vitest shim, since that machine has no
 * node_modules), so every measured difference is printed as well as asserted.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ADAM,
  DEFAULT_LOSS,
  adamStepSizes,
  type Backend,
  type LossSpec,
  type LossValues,
  type Session,
  type Targets,
} from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { cudaEmulationRequested } from '@nst/native';
import { addon, cudaUnavailableReason, relDiff, relL2 } from './helpers.js';

const emulated = cudaEmulationRequested();
/** Image sizes: the GPU's, or smaller ones for the stand-in (same code paths: pools with odd maps, batches, the graph). */
const SIZES = emulated
  ? { parity: [32], fused: 32, adam: 32, batch: 24, odd: { height: 27, width: 21 }, oddStyle: { height: 18, width: 26 } }
  : { parity: [64, 256], fused: 64, adam: 64, batch: 64, odd: { height: 75, width: 61 }, oddStyle: { height: 50, width: 70 } };

const noGpu = cudaUnavailableReason();
// The stand-in is built by npm ci: under CI its absence is a failure, never a skip.
if (noGpu && emulated && process.env.CI === 'true') throw new Error(`the emulated cuda engine cannot run under CI: ${noGpu}`);
if (noGpu) console.log(`cuda parity tests skipped: ${noGpu}`);

const LOSS: LossSpec = { ...DEFAULT_LOSS, tvWeight: 1e-3 };
const WEIGHTS = testWeights(7, 13); // conv1_1 .. conv5_1

// The parity tolerances: relative loss difference and relative L2 of the gradient.
const TOL = {
  fp32: { loss: 1e-5, grad: 1e-4, adamLoss: 1e-4, adamImage: 1e-3 },
  tf32: { loss: 1e-3, grad: 3e-3, adamLoss: 5e-3, adamImage: 2e-2 },
} as const;
type Precision = keyof typeof TOL;

function image(seed: number, height: number, width: number) {
  return { height, width, data: testImage(seed, height * width * 3) };
}

/** Batch item k: its own content and two blended styles, one of another size. */
function targets(k: number, size: number): Targets {
  return {
    content: image(100 + k, size, size),
    styles: [
      { image: image(200 + k, size, size), weight: 0.7 },
      { image: image(300 + k, Math.round(size * 0.75), Math.round(size * 1.25)), weight: 0.3 },
    ],
  };
}

async function backend(device: 'cpu' | 'cuda', precision: Precision = 'fp32'): Promise<Backend> {
  const b = await createNativeBackend(device, device === 'cuda' ? { precision } : {});
  await b.loadWeights(WEIGHTS);
  return b;
}

/**
 * Runs `f` with the cpu engine on direct convolutions (NST_CPU_WINOGRAD=0,
 * read whenever it builds a net): its Winograd layers round differently from
 * cuDNN's direct fp32 algorithms, and over 20 Adam steps that alone moves the
 * image by a good part of the fp32 tolerance.
 */
async function withDirectCpuConvolutions<T>(f: () => Promise<T>): Promise<T> {
  const saved = process.env.NST_CPU_WINOGRAD;
  process.env.NST_CPU_WINOGRAD = '0';
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env.NST_CPU_WINOGRAD;
    else process.env.NST_CPU_WINOGRAD = saved;
  }
}

async function session(b: Backend, size: number, batch: number, firstItem = 0): Promise<Session> {
  const s = await b.createSession({ height: size, width: size, batch, pooling: 'avg', loss: LOSS });
  await s.setTargets(Array.from({ length: batch }, (_, k) => targets(firstItem + k, size)));
  const n = size * size * 3;
  const images = new Float32Array(batch * n);
  for (let k = 0; k < batch; k++) images.set(testImage(400 + firstItem + k, n, -20, 20), k * n);
  await s.setImages(images);
  return s;
}

function lossDiff(a: LossValues, b: LossValues): number {
  return Math.max(relDiff(a.total, b.total), relDiff(a.content, b.content), relDiff(a.style, b.style), relDiff(a.tv, b.tv));
}

/** Loss and gradient of the cuda engine against the cpu engine's, within the tolerances of `precision`; prints both. */
function expectParity(
  label: string,
  got: { losses: LossValues[]; gradient: Float32Array },
  ref: { losses: LossValues[]; gradient: Float32Array },
  precision: Precision,
): void {
  const dLoss = lossDiff(got.losses[0], ref.losses[0]);
  const dGrad = relL2(got.gradient, ref.gradient);
  console.log(`${label}: loss rel ${dLoss.toExponential(2)}, gradient rel L2 ${dGrad.toExponential(2)}`);
  expect(dLoss).toBeLessThanOrEqual(TOL[precision].loss);
  expect(dGrad).toBeLessThanOrEqual(TOL[precision].grad);
}

describe('cuda backend availability', () => {
  it('fails in one line when the cuda engine cannot run, else rejects bf16 in one line (on the precision field)', async () => {
    if (!addon) {
      // Without the addon the loader's reason is the error (tested by the native loader tests).
      await expect(createNativeBackend('cuda')).rejects.toThrow(expect.objectContaining({ field: 'backend', code: 'unsupported' }));
      return;
    }
    if (noGpu) {
      const err = await createNativeBackend('cuda').then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(Error);
      const message = (err as Error).message;
      expect(message.includes('\n')).toBe(false);
      expect(err).toMatchObject({ field: 'backend', code: 'unsupported' });
      expect(message).toMatch(/no usable GPU|no CUDA support|cuDNN|cuBLAS/);
    } else {
      const err = await createNativeBackend('cuda', { precision: 'bf16' }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message.includes('\n')).toBe(false);
      expect((err as Error).message).toMatch(/bf16/);
      expect(err).toMatchObject({ code: 'unsupported', field: 'precision' });
    }
  });
});

describe.skipIf(noGpu !== '')('cuda vs cpu parity (random VGG-19 weights)', () => {
  for (const size of SIZES.parity) {
    it(`loss and gradient at ${size}x${size}, fp32 and tf32`, async () => {
      const cpu = await backend('cpu');
      const ref = await (await session(cpu, size, 1)).lossAndGradient();
      cpu.dispose();
      for (const precision of ['fp32', 'tf32'] as const) {
        const gpu = await backend('cuda', precision);
        const got = await (await session(gpu, size, 1)).lossAndGradient();
        gpu.dispose();
        expectParity(`parity ${size}x${size} ${precision}`, got, ref, precision);
      }
    });
  }

  it(`experimental fused conv+bias+ReLU (NST_CUDA_FUSED_CONV=1) matches the cpu engine at ${SIZES.fused}x${SIZES.fused}, tf32`, async () => {
    const cpu = await backend('cpu');
    const ref = await (await session(cpu, SIZES.fused, 1)).lossAndGradient();
    cpu.dispose();
    process.env.NST_CUDA_FUSED_CONV = '1'; // read when the engine is created
    let gpu: Backend;
    try {
      gpu = await backend('cuda', 'tf32');
    } finally {
      delete process.env.NST_CUDA_FUSED_CONV;
    }
    expect(gpu.detail).toMatch(/fused conv\+bias\+relu/);
    const got = await (await session(gpu, SIZES.fused, 1)).lossAndGradient();
    gpu.dispose();
    expectParity(`fused conv ${SIZES.fused}x${SIZES.fused} tf32`, got, ref, 'tf32');
  });

  it(`20 Adam iterations agree at ${SIZES.adam}x${SIZES.adam} with the cpu engine on direct convolutions (two iterate calls: eager, captured graph, replay)`, async () => {
    const steps = adamStepSizes(DEFAULT_ADAM, 1, 20);
    const run = async (b: Backend) => {
      const s = await session(b, SIZES.adam, 1);
      const first = await s.iterate({ adam: DEFAULT_ADAM, stepSizes: steps.subarray(0, 10) });
      const second = await s.iterate({ adam: DEFAULT_ADAM, stepSizes: steps.subarray(10) });
      const final = await s.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
      return { first: first[0], second: second[0], final: final[0], images: await s.readImages(), state: await s.readOptimizerState() };
    };
    const ref = await withDirectCpuConvolutions(async () => {
      const cpu = await backend('cpu');
      const r = await run(cpu);
      cpu.dispose();
      return r;
    });
    for (const precision of ['fp32', 'tf32'] as const) {
      const gpu = await backend('cuda', precision);
      const got = await run(gpu);
      gpu.dispose();
      const dStart = lossDiff(got.first, ref.first);
      const dMid = lossDiff(got.second, ref.second);
      const dFinal = lossDiff(got.final, ref.final);
      const dImage = relL2(got.images, ref.images);
      const dM = relL2(got.state.m, ref.state.m);
      console.log(
        `adam 20 steps ${precision}: loss rel start ${dStart.toExponential(2)}, step 10 ${dMid.toExponential(2)}, ` +
          `final ${dFinal.toExponential(2)}; image rel L2 ${dImage.toExponential(2)}, m rel L2 ${dM.toExponential(2)}`,
      );
      // The optimisation really moved: the loss fell.
      expect(got.final.total).toBeLessThan(0.9 * got.first.total);
      expect(dStart).toBeLessThanOrEqual(TOL[precision].loss);
      expect(dMid).toBeLessThanOrEqual(TOL[precision].adamLoss);
      expect(dFinal).toBeLessThanOrEqual(TOL[precision].adamLoss);
      expect(dImage).toBeLessThanOrEqual(TOL[precision].adamImage);
      expect(dM).toBeLessThanOrEqual(TOL[precision].adamImage);
    }
  });

  it(`a batch of 4 equals 4 single runs (fp32, ${SIZES.batch}x${SIZES.batch}: loss, gradient, 5 Adam steps)`, async () => {
    const size = SIZES.batch;
    const n = size * size * 3;
    const steps = adamStepSizes(DEFAULT_ADAM, 1, 5);
    const gpu = await backend('cuda', 'fp32');
    const batched = await session(gpu, size, 4);
    const batchGrad = await batched.lossAndGradient();
    await batched.iterate({ adam: DEFAULT_ADAM, stepSizes: steps });
    const batchImages = await batched.readImages();
    for (let k = 0; k < 4; k++) {
      const single = await session(gpu, size, 1, k);
      const one = await single.lossAndGradient();
      await single.iterate({ adam: DEFAULT_ADAM, stepSizes: steps });
      const dLoss = lossDiff(batchGrad.losses[k], one.losses[0]);
      const dGrad = relL2(batchGrad.gradient.subarray(k * n, (k + 1) * n), one.gradient);
      const dImage = relL2(batchImages.subarray(k * n, (k + 1) * n), await single.readImages());
      console.log(
        `batch item ${k}: loss rel ${dLoss.toExponential(2)}, gradient ${dGrad.toExponential(2)}, image after 5 steps ${dImage.toExponential(2)}`,
      );
      expect(dLoss).toBeLessThanOrEqual(TOL.fp32.loss);
      expect(dGrad).toBeLessThanOrEqual(TOL.fp32.grad);
      expect(dImage).toBeLessThanOrEqual(TOL.fp32.adamImage);
      single.dispose();
    }
    // Items differ from each other (each really has its own targets).
    expect(relDiff(batchGrad.losses[0].total, batchGrad.losses[1].total)).toBeGreaterThan(1e-3);
    gpu.dispose();
  });

  const { height: oddH, width: oddW } = SIZES.odd;
  it(`max pooling and odd sizes (${oddW}x${oddH}, fp32) match the cpu engine`, async () => {
    const run = async (b: Backend) => {
      const s = await b.createSession({ height: oddH, width: oddW, batch: 1, pooling: 'max', loss: LOSS });
      await s.setTargets([
        { content: image(1, oddH, oddW), styles: [{ image: image(2, SIZES.oddStyle.height, SIZES.oddStyle.width), weight: 1 }] },
      ]);
      await s.setImages(testImage(3, oddH * oddW * 3, -20, 20));
      return s.lossAndGradient();
    };
    const cpu = await backend('cpu');
    const ref = await run(cpu);
    cpu.dispose();
    const gpu = await backend('cuda', 'fp32');
    const got = await run(gpu);
    gpu.dispose();
    expectParity(`max pool ${oddW}x${oddH} fp32`, got, ref, 'fp32');
  });

  it('a session too large for the GPU fails in one line naming the largest size that fits', async () => {
    const gpu = await backend('cuda', 'tf32');
    const err = await gpu.createSession({ height: 16384, width: 16384, batch: 4, pooling: 'avg', loss: LOSS }).then(
      () => undefined,
      (e: Error) => e,
    );
    gpu.dispose();
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    console.log(`out of memory: ${message}`);
    expect(message.includes('\n')).toBe(false);
    expect(err).toMatchObject({ name: 'UserError', code: 'too-large', field: 'size' });
    // Its conv1 maps alone are beyond cuDNN's 2^31-element tensor limit: no memory would do.
    expect(message).toMatch(/^size: 16384x16384 batch 4 is beyond what the engine can describe at any memory on the cuda backend/);
    expect(message).toMatch(/the largest size that fits is about \d+x\d+$/);
  });
});
