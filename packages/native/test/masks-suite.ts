/**
 * Spatial control (issue 25) on a native engine against the float64
 * reference (test/reference/masked-float64.ts): soft masks, two regions with
 * complementary masks, a region blending two styles beside an unmasked one,
 * a style's region, a content mask, avg and max pooling, a batch of 2 with
 * different masks per item; all-white masks give the unmasked session's
 * losses and gradient to the last digit; Adam runs with masks. Registered by
 * cpu-masks.test.ts and cuda-masks-emulated.test.ts (the cuda engine on the
 * CPU stand-in).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADAM, adamStepSizes, type LossValues, type Targets } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { maskedCases, referenceMaskedBatch, whiteMasked } from '../../../test/reference/masked-cases.js';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { PARITY_SIZE, PARITY_TOLERANCE, parityCases } from '../../../test/reference/parity-cases.js';
import { relDiff, relL2 } from './helpers.js';

const { height: h, width: w } = PARITY_SIZE;

function expectLossesClose(got: readonly LossValues[], want: readonly LossValues[], tol: number): number {
  let worst = 0;
  got.forEach((g, b) => {
    for (const key of ['content', 'style', 'tv', 'total'] as const) {
      const d = relDiff(g[key], want[b][key]);
      worst = Math.max(worst, d);
      if (!(d <= tol)) throw new Error(`item ${b} ${key}: native ${g[key]} vs ${want[b][key]} (relative ${d.toExponential(2)})`);
    }
  });
  return worst;
}

export function masksSuite(device: 'cpu' | 'cuda', skip: string): void {
  const options = device === 'cuda' ? { precision: 'fp32' as const } : {};
  describe.skipIf(skip !== '')(`native ${device}: masks against the float64 reference${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const weights = testWeights(5, 13);

    for (const c of maskedCases()) {
      it(`masked loss and gradient match the reference: ${c.name}`, async () => {
        const backend = await createNativeBackend(device, options);
        await backend.loadWeights(weights);
        const images = testImage(30, c.options.batch * h * w * 3);
        const session = await backend.createSession(c.options);
        await session.setTargets(c.targets);
        await session.setImages(images);
        const got = await session.lossAndGradient();
        const want = referenceMaskedBatch(weights, c.options, c.targets, images);
        const lossDiff = expectLossesClose(got.losses, want.losses, PARITY_TOLERANCE.loss);
        const gradDiff = relL2(got.gradient, want.gradient);
        console.log(
          `${device} masks, ${c.name}: worst relative loss ${lossDiff.toExponential(2)}, gradient relative L2 ${gradDiff.toExponential(2)}`,
        );
        expect(gradDiff).toBeLessThan(PARITY_TOLERANCE.gradient);
        session.dispose();
        backend.dispose();
      });
    }

    it('all-white masks (style masks, regions, content mask) give the unmasked losses and gradient exactly', async () => {
      const backend = await createNativeBackend(device, options);
      await backend.loadWeights(weights);
      const c = parityCases()[0];
      const images = testImage(31, c.options.batch * h * w * 3);
      const run = async (targets: Targets[]) => {
        const session = await backend.createSession(c.options);
        await session.setTargets(targets);
        await session.setImages(images);
        const result = await session.lossAndGradient();
        session.dispose();
        return result;
      };
      const plain = await run(c.targets);
      const white = await run(c.targets.map((t) => whiteMasked(t).white));
      expect(white.losses).toEqual(plain.losses);
      expect(white.gradient).toEqual(plain.gradient);
      backend.dispose();
    });

    it('Adam runs with masks and lowers the loss', async () => {
      const backend = await createNativeBackend(device, options);
      await backend.loadWeights(weights);
      const c = maskedCases()[0];
      const session = await backend.createSession(c.options);
      await session.setTargets(c.targets);
      await session.setImages(testImage(32, c.options.batch * h * w * 3));
      const first = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: adamStepSizes(DEFAULT_ADAM, 1, 5) });
      const after = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
      after.forEach((l, b) => {
        expect(Number.isFinite(l.total)).toBe(true);
        expect(l.total).toBeLessThan(first[b].total);
      });
      session.dispose();
      backend.dispose();
    });

    it('refuses a mask out of 0..1', async () => {
      const backend = await createNativeBackend(device, options);
      await backend.loadWeights(weights);
      const c = maskedCases()[1];
      const session = await backend.createSession(c.options);
      const bad = { ...c.targets[0], contentMask: new Float32Array(h * w).fill(1.5) };
      await expect(session.setTargets([bad])).rejects.toThrow(/must lie in 0\.\.1/);
      session.dispose();
      backend.dispose();
    });

    it('the memory estimate grows with style regions and a content mask', async () => {
      const backend = await createNativeBackend(device, options);
      const shape = { ...maskedCases()[0].options, styleSizes: [{ height: 17, width: 20 }] };
      const plain = backend.estimateMemory(shape);
      expect(backend.estimateMemory({ ...shape, regions: 2 })).toBeGreaterThan(plain);
      expect(backend.estimateMemory({ ...shape, regions: 3 })).toBeGreaterThan(backend.estimateMemory({ ...shape, regions: 2 }));
      expect(backend.estimateMemory({ ...shape, contentMask: true })).toBeGreaterThan(plain);
      backend.dispose();
    });
  });
}
