/**
 * The cuda engine's memory plan through the addon, on the CPU stand-in
 * (NST_CUDA_EMULATION=1) with 512 MiB of emulated device memory: the
 * estimate's answers (Infinity at cuDNN's 2^31-element tensor limit, which
 * core's size search then stops at), the free memory it reports, and its
 * refusals of a session and of a style image that do not fit, as data that
 * the backend turns into core's one message. (That the estimate covers what
 * the engine allocates is native/emulation/test/memory_plan_test.cc.)
 */
import './use-cuda-emulation.js';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LOSS, isUserError, largestFittingSize, memoryRefusal, weightFloats, type Backend, type MemoryShape } from '@nst/core';
import { createNativeBackend, isNativeEngineError } from '@nst/native';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { cudaUnavailableReason } from './helpers.js';

// Read by the stand-in when the first engine asks (the addon is loaded, no engine yet).
process.env.NST_EMULATED_GPU_MEMORY_MIB = '512';

const why = cudaUnavailableReason();
if (why && process.env.CI === 'true') throw new Error(`the emulated cuda engine cannot run under CI: ${why}`);
if (why) console.log(`cuda memory tests skipped: ${why}`);

const GiB = 2 ** 30;
const shape = (height: number, width: number, batch = 1, styleSizes = [{ height, width }]): MemoryShape => ({
  height,
  width,
  pooling: 'avg',
  batch,
  loss: DEFAULT_LOSS,
  styleSizes,
});

async function emulatedCuda(): Promise<Backend> {
  return createNativeBackend('cuda', { precision: 'fp32' });
}

describe.skipIf(why !== '')('cuda memory plan on the stand-in', () => {
  it("is Infinity beyond cuDNN's tensor limit, and core's size search stops at that limit", async () => {
    const cuda = await emulatedCuda();
    const estimate = (s: MemoryShape) => cuda.estimateMemory(s);
    // The conv1 maps (64 channels at full size) reach 2^31 elements first.
    expect(estimate(shape(4096, 4096, 2))).toBe(Number.POSITIVE_INFINITY); // 4096 * 4096 * 64 * 2 = 2^31
    expect(estimate(shape(4096, 4096, 1))).toBeLessThan(Number.POSITIVE_INFINITY);
    expect(estimate(shape(2048, 2048, 8))).toBe(Number.POSITIVE_INFINITY);
    expect(estimate(shape(2048, 2048, 7))).toBeLessThan(Number.POSITIVE_INFINITY);
    // A style image runs at batch 1: 6000x6000 is beyond the limit too.
    expect(estimate(shape(512, 512, 1, [{ height: 6000, width: 6000 }]))).toBe(Number.POSITIVE_INFINITY);
    // Both fit an H200's memory, so the search must stop at the limit.
    const h200 = 140 * GiB;
    for (const s of [shape(4096, 4096, 2, []), shape(2048, 2048, 8, [])]) {
      const fit = largestFittingSize(s, estimate, h200)!;
      expect(fit.height).toBeLessThan(s.height);
      expect(fit.width).toBe(fit.height);
      expect(estimate({ ...s, ...fit })).toBeLessThanOrEqual(h200);
      expect(estimate({ ...s, height: fit.height + 8, width: fit.width + 8 })).toBe(Number.POSITIVE_INFINITY);
    }
    cuda.dispose();
  });

  it('the largest size that fits keeps the aspect; the refusal names it, or says nothing fits', async () => {
    const cuda = await emulatedCuda();
    const estimate = (s: MemoryShape) => cuda.estimateMemory(s);
    const job = shape(3000, 4000, 2, []);
    const available = 6 * GiB;
    expect(estimate(job)).toBeGreaterThan(available);
    const fit = largestFittingSize(job, estimate, available)!;
    expect(fit.height).toBeLessThan(3000);
    expect(Math.abs(fit.width / fit.height - 4 / 3)).toBeLessThan(0.01);
    expect(estimate({ ...job, ...fit })).toBeLessThanOrEqual(available);
    expect(estimate({ ...job, height: fit.height + 8, width: fit.width + 8 })).toBeGreaterThan(available);
    const refusal = memoryRefusal('cuda', job, estimate(job), available, estimate);
    expect(refusal.message).toMatch(
      new RegExp(`^size: 4000x3000 batch 2 needs about .* the largest size that fits is about ${fit.width}x${fit.height}$`),
    );
    // Nothing fits in 1 MiB (the workspace reserve alone is larger).
    expect(largestFittingSize(job, estimate, 2 ** 20)).toBeUndefined();
    expect(memoryRefusal('cuda', job, estimate(job), 2 ** 20, estimate).message).toMatch(/not even the smallest size fits$/);
    cuda.dispose();
  });

  it("reports the stand-in's free device memory: weights loaded take exactly their bytes", async () => {
    const cuda = await emulatedCuda();
    const cpu = await createNativeBackend('cpu');
    expect(cpu.deviceMemoryAvailable).toBeUndefined(); // host memory: the job layer measures it
    cpu.dispose();
    const before = cuda.deviceMemoryAvailable!();
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThanOrEqual(512 * 2 ** 20);
    await cuda.loadWeights(testWeights(7, 13));
    expect(before - cuda.deviceMemoryAvailable!()).toBe(4 * weightFloats(12));
    cuda.dispose();
  });

  it('refuses a session that does not fit as data: core refusal, needed = its estimate less the weights already loaded', async () => {
    const cuda = await emulatedCuda();
    await cuda.loadWeights(testWeights(7, 13));
    const free = cuda.deviceMemoryAvailable!();
    const options = { height: 512, width: 512, batch: 1, pooling: 'avg', loss: DEFAULT_LOSS } as const;
    const err = await cuda.createSession(options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isUserError(err) && [err.code, err.field]).toEqual(['too-large', 'size']);
    const cause = (err as Error).cause;
    expect(isNativeEngineError(cause) && [cause.code, cause.field]).toEqual(['too-large', 'size']);
    const { needed, available } = cause as { needed: number; available: number };
    expect(available).toBe(free);
    expect(needed).toBeGreaterThan(available);
    // The engine checks its plan of the session; the estimate adds the weights (already on the device).
    expect(needed + 4 * weightFloats(12)).toBe(cuda.estimateMemory({ ...options, styleSizes: [] }));
    const fit = largestFittingSize({ ...options, styleSizes: [] }, (s) => cuda.estimateMemory(s), available)!;
    expect((err as Error).message).toBe(
      memoryRefusal('cuda', { ...options, styleSizes: [] }, needed, available, (s) => cuda.estimateMemory(s)).message,
    );
    expect((err as Error).message).toMatch(
      new RegExp(
        `^size: 512x512 needs about .* on the cuda backend but .* the largest size that fits is about ${fit.width}x${fit.height}$`,
      ),
    );
    // The size it names does fit.
    const smaller = await cuda.createSession({ ...options, height: fit.height, width: fit.width });
    smaller.dispose();
    cuda.dispose();
  });

  it('refuses a style image that does not fit on styleScale', async () => {
    const cuda = await emulatedCuda();
    await cuda.loadWeights(testWeights(7, 13));
    const session = await cuda.createSession({ height: 32, width: 32, batch: 1, pooling: 'avg', loss: DEFAULT_LOSS });
    const style = { height: 1024, width: 1024, data: testImage(2, 1024 * 1024 * 3) };
    const err = await session
      .setTargets([{ content: { height: 32, width: 32, data: testImage(1, 32 * 32 * 3) }, styles: [{ image: style, weight: 1 }] }])
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isUserError(err) && [err.code, err.field]).toEqual(['too-large', 'styleScale']);
    const cause = (err as Error).cause as { needed: number; available: number };
    expect(cause.needed).toBeGreaterThan(cause.available);
    expect((err as Error).message).toMatch(/^styleScale: 32x32 with style images up to 1024x1024 needs about /);
    session.dispose();
    cuda.dispose();
  });
});
