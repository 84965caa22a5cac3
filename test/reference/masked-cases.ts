/**
 * The cases on which every backend's masked loss (issue 25) is held to the
 * float64 reference (masked-float64.ts): parity-cases.ts's size and losses
 * with soft style masks (two complementary regions, a region of two blended
 * styles beside an unmasked style), a style region mask on the painting, a
 * content mask, avg and max pooling, and a batch whose items have masks of
 * their own. Used by packages/native/test/masks-suite.ts (cpu, cuda
 * stand-in) and packages/tfjs/test/masks.test.ts.
 */
import { DEFAULT_LOSS, type LossValues, type SessionOptions, type Targets, type WeightSet } from '@nst/core';
import { referenceMaskedItem, type MaskedTargets } from './masked-float64.js';
import { tensor3 } from './vgg-float64.js';
import { MAX_POOLING_LOSS, PARITY_SIZE, testPicture, type ParityCase } from './parity-cases.js';

/** A soft left-to-right ramp (0 left of x0, 1 right of x1, linear between), float32. */
export function ramp(height: number, width: number, x0: number, x1: number): Float32Array {
  const m = new Float32Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) m[y * width + x] = Math.min(1, Math.max(0, (x - x0) / (x1 - x0)));
  return m;
}
export const complement = (m: Float32Array) => m.map((v) => 1 - v);
/** A soft top-to-bottom ramp. */
function vramp(height: number, width: number): Float32Array {
  const m = new Float32Array(height * width);
  for (let y = 0; y < height; y++) m.fill(Math.min(1, (y + 0.5) / (height * 0.7)), y * width, (y + 1) * width);
  return m;
}

export function maskedCases(seed = 0): ParityCase[] {
  const { height: h, width: w } = PARITY_SIZE;
  const image = (k: number, height: number, width: number) => testPicture(seed + k, height, width);
  const left = ramp(h, w, 6, 16);
  return [
    {
      name: 'avg pooling, default loss + TV, batch 2: two complementary regions, a style region, a content mask; a blended region beside an unmasked style',
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

/** A case's targets as the float64 reference takes them. */
export function toReference(t: Targets): MaskedTargets {
  const f64 = (m: Float32Array | undefined) => (m ? Float64Array.from(m) : undefined);
  return {
    content: t.content,
    styles: t.styles.map((s) => ({ image: s.image, weight: s.weight, mask: f64(s.mask), region: f64(s.region) })),
    contentMask: f64(t.contentMask),
  };
}

/** The reference's losses and gradient of a batch (images: batch x H x W x 3), item by item. */
export function referenceMaskedBatch(
  weights: WeightSet,
  options: SessionOptions,
  targets: readonly Targets[],
  images: Float32Array,
): { losses: LossValues[]; gradient: Float64Array } {
  const n = options.height * options.width * 3;
  const gradient = new Float64Array(images.length);
  const losses = targets.map((t, b) => {
    const item = referenceMaskedItem(
      weights,
      options,
      toReference(t),
      tensor3(options.height, options.width, 3, images.subarray(b * n, (b + 1) * n)),
    );
    gradient.set(item.gradient, b * n);
    return item.losses;
  });
  return { losses, gradient };
}

/** The same targets with every mask white: they must render exactly as `unmasked` (the masks dropped). */
export function whiteMasked(t: Targets): { white: Targets; unmasked: Targets } {
  const white = (n: number) => new Float32Array(n).fill(1);
  const { height, width } = t.content;
  return {
    white: {
      ...t,
      contentMask: white(height * width),
      styles: t.styles.map((s) => ({
        image: s.image,
        weight: s.weight,
        mask: white(height * width),
        region: white(s.image.height * s.image.width),
      })),
    },
    unmasked: { content: t.content, styles: t.styles.map((s) => ({ image: s.image, weight: s.weight })) },
  };
}
