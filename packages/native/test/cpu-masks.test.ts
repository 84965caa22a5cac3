/** Spatial control on the cpu engine (fp32) against the float64 reference: masks-suite.ts. */
import { describe, expect, it } from 'vitest';
import { createNativeBackend } from '@nst/native';
import { testWeights } from '../../../test/reference/random-weights.js';
import { maskCases, masksSuite } from './masks-suite.js';
import { addon, skipReason } from './helpers.js';

masksSuite('cpu', addon ? '' : skipReason || 'native addon not loaded');

/** bf16 runs where the processor has it, or with features forced where oneDNN emulates it (AVX-512). */
async function bf16Backend() {
  for (const forced of [undefined, 'avx512_bf16']) {
    const saved = process.env.NST_CPU_FEATURES;
    if (forced) process.env.NST_CPU_FEATURES = forced;
    try {
      return await createNativeBackend('cpu', { precision: 'bf16' });
    } catch {
      // try the next
    } finally {
      if (saved === undefined) delete process.env.NST_CPU_FEATURES;
      else process.env.NST_CPU_FEATURES = saved;
    }
  }
  return undefined;
}

describe.skipIf(!addon)('native cpu bf16 and masks', () => {
  it('bf16 refuses masks in one coded line (unsupported, styleMasks)', async (ctx) => {
    const backend = await bf16Backend();
    if (!backend) return ctx.skip('no bf16 on this processor, even emulated');
    await backend.loadWeights(testWeights(5, 13));
    const c = maskCases()[1];
    const session = await backend.createSession(c.options);
    await expect(session.setTargets(c.targets)).rejects.toMatchObject({ code: 'unsupported', field: 'styleMasks' });
    session.dispose();
    backend.dispose();
  });
});
