/**
 * The cases on which the engines' masked losses (issue 25) are held to the
 * float64 reference (masked-float64.ts): parity-cases.ts's sizes and losses
 * with soft style masks (two regions, a region of two blended styles, a mask
 * that leaves part of the picture to the content loss alone), a style region
 * mask on the painting, a content mask, and a batch whose items have masks
 * of their own. `toReference` turns a case's seam targets into the
 * reference's.
 */
import type { LossValues, SessionOptions, Targets, WeightSet } from '@nst/core';
import { referenceMaskedItem, type MaskedTargets } from './masked-float64.js';
import { tensor3 } from './vgg-float64.js';
import { PARITY_SIZE, parityCases, testPicture, type ParityCase } from './parity-cases.js';

/** A soft ramp across the picture, 0 to 1 over a band `soft` pixels wide around the line x + slope y = at. */
export function rampMask(height: number, width: number, at: number, slope: number, soft: number, invert = false): Float32Array {
  const m = new Float32Array(height * width);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const v = Math.min(1, Math.max(0, (x + slope * y - at) / soft + 0.5));
      m[y * width + x] = invert ? 1 - v : v;
    }
  return m;
}

export function maskedCases(seed = 0): ParityCase[] {
  const { height: h, width: w } = PARITY_SIZE;
  const [avg, max] = parityCases(seed);
  const image = (k: number, height: number, width: number) => testPicture(seed + k, height, width);
  const left = rampMask(h, w, w / 2, 0.4, 6, true);
  const right = rampMask(h, w, w / 2, 0.4, 6);
  return [
    {
      name: `${avg.options.pooling} pooling, masks per item: two regions with a style region and a content mask; a region of two blended styles`,
      options: avg.options,
      targets: [
        {
          content: image(11, h, w),
          styles: [
            { image: image(12, 17, 20), weight: 0.5, mask: left },
            { image: image(16, 13, 15), weight: 0.5, mask: right, region: rampMask(13, 15, 6, -0.5, 4) },
          ],
          contentMask: rampMask(h, w, 8, 1, 10),
        },
        {
          content: image(13, h, w),
          styles: [
            { image: image(14, 13, 15), weight: 0.3, mask: right },
            { image: image(15, h, w), weight: 0.5, mask: left },
            { image: image(17, 16, 18), weight: 0.2, mask: right },
          ],
        },
      ],
    },
    {
      name: `${max.options.pooling} pooling, one style on part of the picture (the rest: content only)`,
      options: max.options,
      targets: [{ content: image(21, h, w), styles: [{ image: image(22, 16, 21), weight: 1, mask: rampMask(h, w, 14, -0.3, 5) }] }],
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
