/**
 * The temporal term of video on the cuda engine, on its CPU stand-in
 * (NST_CUDA_EMULATION=1): loss and gradient against the float64 reference,
 * in a batch whose items have a temporal target or none, and a few Adam
 * steps (the term inside the captured CUDA graph) against the cpu engine.
 * test/reference/temporal-float64.test.ts checks the cpu engine and TF.js the
 * same way; the kernel family's own self-test (nst_kernel_test) runs in
 * packages/native/test/cuda-emulated-selftest.test.ts.
 */
import '../packages/native/test/use-cuda-emulation.js';
import { describe, expect, it } from 'vitest';
import { adamStepSizes, DEFAULT_ADAM } from '@nst/core';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { available, relDiff, relL2 } from '@nst/test-helpers';
import { referenceLossAndGradient } from './reference/vgg-float64.js';
import { WEIGHTS, OPTIONS, TARGETS, IMAGES } from './reference/temporal-cases.js';

function cudaWhy(): string {
  const loaded = loadNativeAddon();
  if (!loaded.ok) return loaded.reason;
  try {
    loaded.addon.createEngine('cuda', { precision: 'fp32' }).dispose();
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}
const runs = available(cudaWhy() === '', `the temporal term on the emulated cuda engine: ${cudaWhy()}`);

describe.skipIf(!runs)('the temporal term on the cuda engine (CPU stand-in)', () => {
  it('loss and gradient match the float64 reference; an item without a target has no term', async () => {
    const cuda = await createNativeBackend('cuda', { precision: 'fp32' });
    await cuda.loadWeights(WEIGHTS);
    const session = await cuda.createSession(OPTIONS);
    await session.setTargets(TARGETS);
    await session.setImages(IMAGES);
    const got = await session.lossAndGradient();
    const want = referenceLossAndGradient(WEIGHTS, OPTIONS, TARGETS, IMAGES);
    got.losses.forEach((l, b) => {
      for (const key of ['content', 'style', 'tv', 'temporal', 'total'] as const)
        if (want.losses[b][key] !== 0) expect(relDiff(l[key]!, want.losses[b][key]!), `item ${b} ${key}`).toBeLessThan(1e-5);
    });
    expect(got.losses[1].temporal).toBe(0);
    expect(relL2(got.gradient, want.gradient)).toBeLessThan(1e-4);
    session.dispose();
    cuda.dispose();
  });

  it('20 Adam steps (eager, captured, replayed) end where the cpu engine ends', async () => {
    const run = async (device: 'cpu' | 'cuda') => {
      const backend = await createNativeBackend(device, device === 'cuda' ? { precision: 'fp32' } : {});
      await backend.loadWeights(WEIGHTS);
      const session = await backend.createSession(OPTIONS);
      await session.setTargets(TARGETS);
      await session.setImages(IMAGES);
      const first = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, 20) });
      const after = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
      const images = await session.readImages();
      session.dispose();
      backend.dispose();
      return { first, after, images };
    };
    // The cpu engine on direct convolutions, as cuDNN's (its Winograd layers round otherwise: cuda-suite.ts).
    process.env.NST_CPU_WINOGRAD = '0';
    const cpu = await run('cpu').finally(() => delete process.env.NST_CPU_WINOGRAD);
    const cuda = await run('cuda');
    for (let b = 0; b < 3; b++) {
      expect(relDiff(cuda.first[b].total, cpu.first[b].total)).toBeLessThan(1e-5);
      expect(relDiff(cuda.after[b].total, cpu.after[b].total)).toBeLessThan(1e-4);
      if (b !== 1) expect(relDiff(cuda.after[b].temporal!, cpu.after[b].temporal!)).toBeLessThan(1e-3);
    }
    expect(relL2(cuda.images, cpu.images)).toBeLessThan(1e-3);
  });
});
