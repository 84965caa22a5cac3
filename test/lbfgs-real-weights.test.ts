/**
 * L-BFGS with the real weights on native cpu, tfjs, and cuda when a GPU is
 * here (lbfgs-real-weights-case.ts says what is checked). The cuda engine on
 * the CPU stand-in runs in lbfgs-cuda-emulated.test.ts, which fails under CI
 * when the engine does not load.
 */
import { describe, it } from 'vitest';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { createTfjsBackend } from '@nst/tfjs';
import { sharedAvailable, skip } from '@nst/test-helpers';
import { checkLbfgs, cudaUnavailable } from './lbfgs-real-weights-case.js';

const ci = process.env.CI === 'true';
const ITERATIONS = 12;
const missing = !sharedAvailable('weights') || !sharedAvailable('images');

describe.runIf(!missing)(`L-BFGS with the real weights, 64x48${missing ? ' (skipped: ../shared absent)' : ''}`, () => {
  it('native cpu', async (ctx) => {
    const loaded = loadNativeAddon();
    if (!loaded.ok && !ci) skip(ctx, loaded.reason);
    await checkLbfgs(() => createNativeBackend('cpu'), ITERATIONS);
  });

  it('tfjs', async () => {
    await checkLbfgs(() => createTfjsBackend(), ITERATIONS);
  });

  it('cuda on a GPU', async (ctx) => {
    const why = cudaUnavailable();
    if (why) skip(ctx, `cuda case (the stand-in runs it in lbfgs-cuda-emulated.test.ts): ${why}`);
    await checkLbfgs(() => createNativeBackend('cuda', { precision: 'fp32' }), ITERATIONS);
  });
});
