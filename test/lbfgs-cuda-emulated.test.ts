/**
 * L-BFGS through the cuda engine on the CPU stand-in (NST_CUDA_EMULATION=1,
 * the build npm ci makes as native/build-emulated), with the real weights:
 * the same check as the other backends, fewer iterations (the stand-in is
 * slow). Under CI an engine that does not load fails the test.
 */
import './cuda-emulation-env.js';
import { describe, it } from 'vitest';
import { createNativeBackend } from '@nst/native';
import { sharedAvailable, skip } from '@nst/test-helpers';
import { checkLbfgs, cudaUnavailable } from './lbfgs-real-weights-case.js';

const ci = process.env.CI === 'true';
const missing = !sharedAvailable('weights') || !sharedAvailable('images');

describe.runIf(!missing)('L-BFGS on the cuda engine (CPU stand-in), real weights, 64x48', () => {
  it('first step, float64 loss, and lower than Adam at equal evaluations', async (ctx) => {
    const why = cudaUnavailable();
    if (why && ci) throw new Error(`the cuda engine does not load on the stand-in: ${why}`);
    if (why) skip(ctx, why);
    await checkLbfgs(() => createNativeBackend('cuda', { precision: 'fp32' }), 4);
  });
});
