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
import { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes, type LossValues, type SessionOptions, type Targets } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { referenceMaskedItem, type MaskedTargets } from '../../../test/reference/masked-float64.js';
import { tensor3 } from '../../../test/reference/vgg-float64.js';
import { testImage, testWeights } from '../../../test/reference/random-weights.js';
import { MAX_POOLING_LOSS, PARITY_SIZE, PARITY_TOLERANCE, parityCases, testPicture } from '../../../test/reference/parity-cases.js';
import { relDiff, relL2 } from './helpers.js';

const { height: h, width: w } = PARITY_SIZE;

/** A soft left-to-right ramp (0 left of x0, 1 right of x1, linear between), float32. */
function ramp(height: number, width: number, x0: number, x1: number): Float32Array {
  const m = new Float32Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) m[y * width + x] = Math.min(1, Math.max(0, (x - x0) / (x1 - x0)));
  return m;
}
const complement = (m: Float32Array) => m.map((v) => 1 - v);
/** A soft top-to-bottom ramp. */
function vramp(height: number, width: number): Float32Array {
  const m = new Float32Array(height * width);
  for (let y = 0; y < height; y++) m.fill(Math.min(1, (y + 0.5) / (height * 0.7)), y * width, (y + 1) * width);
  return m;
}

interface MaskCase {
  readonly name: string;
  readonly options: SessionOptions;
  readonly targets: Targets[];
}

export function maskCases(): MaskCase[] {
  const image = testPicture;
  const left = ramp(h, w, 6, 16);
  return [
    {
      name: 'avg pooling, default loss + TV, batch 2: two complementary regions, a style region, a content mask; a blended region beside an unmasked one',
      options: { height: h, width: w, batch: 2, pooling: 'avg', loss: { ...DEFAULT_LOSS, tvWeight: 2e-4 } },
      targets: [
        {
          content: image(11, h, w),
          styles: [
            { image: image(12, 17, 20), weight: 1, mask: left, region: ramp(17, 20, 3, 12) },
            { image: image(14, 13, 15), weight: 1, mask: complement(left) },
          ],
          contentMask: vramp(h, w),
        },
        {
          content: image(13, h, w),
          styles: [
            { image: image(15, 13, 15), weight: 0.2, mask: vramp(h, w) },
            { image: image(16, h, w), weight: 0.6, mask: vramp(h, w) },
            { image: image(17, 16, 21), weight: 1 },
          ],
        },
      ],
    },
    {
      name: 'max pooling, content at conv5_1, style at conv1_1 and conv3_2: two regions, a content mask',
      options: { height: h, width: w, batch: 1, pooling: 'max', loss: MAX_POOLING_LOSS },
      targets: [
        {
          content: image(21, h, w),
          styles: [
            { image: image(22, 16, 21), weight: 1, mask: complement(vramp(h, w)) },
            { image: image(23, h, w), weight: 1, mask: vramp(h, w) },
          ],
          contentMask: left,
        },
      ],
    },
  ];
}

const f64 = (m: Float32Array | undefined) => (m ? Float64Array.from(m) : undefined);

/** The seam's targets as the reference takes them (float64 masks). */
function referenceTargets(t: Targets): MaskedTargets {
  return {
    content: t.content,
    styles: t.styles.map((s) => ({ image: s.image, weight: s.weight, mask: f64(s.mask), region: f64(s.region) })),
    contentMask: f64(t.contentMask),
  };
}

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

/** White everywhere: every mask of the targets, at its size. */
function whiteMasks(t: Targets, height: number, width: number): Targets {
  return {
    ...t,
    styles: t.styles.map((s) => ({
      ...s,
      mask: new Float32Array(height * width).fill(1),
      region: new Float32Array(s.image.height * s.image.width).fill(1),
    })),
    contentMask: new Float32Array(height * width).fill(1),
  };
}

export function masksSuite(device: 'cpu' | 'cuda', skip: string): void {
  const options = device === 'cuda' ? { precision: 'fp32' as const } : {};
  describe.skipIf(skip !== '')(`native ${device}: masks against the float64 reference${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const weights = testWeights(5, 13);

    for (const c of maskCases()) {
      it(`masked loss and gradient match the reference: ${c.name}`, async () => {
        const backend = await createNativeBackend(device, options);
        await backend.loadWeights(weights);
        const images = testImage(30, c.options.batch * h * w * 3);
        const session = await backend.createSession(c.options);
        await session.setTargets(c.targets);
        await session.setImages(images);
        const got = await session.lossAndGradient();
        const per = h * w * 3;
        const want = c.targets.map((t, b) =>
          referenceMaskedItem(weights, c.options, referenceTargets(t), tensor3(h, w, 3, images.subarray(b * per, (b + 1) * per))),
        );
        const gradient = new Float64Array(c.options.batch * per);
        want.forEach((r, b) => gradient.set(r.gradient, b * per));
        const lossDiff = expectLossesClose(
          got.losses,
          want.map((r) => r.losses),
          PARITY_TOLERANCE.loss,
        );
        const gradDiff = relL2(got.gradient, gradient);
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
      const white = await run(c.targets.map((t) => whiteMasks(t, h, w)));
      expect(white.losses).toEqual(plain.losses);
      expect(white.gradient).toEqual(plain.gradient);
      backend.dispose();
    });

    it('Adam runs with masks and lowers the loss', async () => {
      const backend = await createNativeBackend(device, options);
      await backend.loadWeights(weights);
      const c = maskCases()[0];
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
      const c = maskCases()[1];
      const session = await backend.createSession(c.options);
      const bad = { ...c.targets[0], contentMask: new Float32Array(h * w).fill(1.5) };
      await expect(session.setTargets([bad])).rejects.toThrow(/must lie in 0\.\.1/);
      session.dispose();
      backend.dispose();
    });

    it('the memory estimate grows with style regions and a content mask', async () => {
      const backend = await createNativeBackend(device, options);
      const shape = { ...maskCases()[0].options, styleSizes: [{ height: 17, width: 20 }] };
      const plain = backend.estimateMemory(shape);
      expect(backend.estimateMemory({ ...shape, regions: 2 })).toBeGreaterThan(plain);
      expect(backend.estimateMemory({ ...shape, regions: 3 })).toBeGreaterThan(backend.estimateMemory({ ...shape, regions: 2 }));
      expect(backend.estimateMemory({ ...shape, contentMask: true })).toBeGreaterThan(plain);
      backend.dispose();
    });
  });
}
