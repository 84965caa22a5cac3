/**
 * Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors in
 * Neural Style Transfer"): a style applies where its mask is white, and the
 * content loss is weighted per pixel. This module holds what every backend
 * shares: which styles form a region, and each mask at each layer's size.
 * The backends compute the guided Grams; test/reference/masked-float64.ts
 * defines the whole objective in float64.
 *
 * A mask is a weight in [0, 1] per pixel (white = 1, grey a soft edge),
 * height x width, row-major. At a layer it is the image's mask
 * average-pooled at each pooling before the layer, with the network's 2x2
 * TF SAME windows (vgg.ts, layerInputSize), whatever the network's own
 * pooling: a mask is a weight, not a feature, and so it stays aligned at odd
 * sizes.
 *
 * Under mask m at a layer of activations A (N positions x C channels) the
 * guided Gram is Ghat_m = (A o m)^T (A o m) / sum_p m_p: normalised by the
 * mask's mass, so that a region's style strength does not depend on its
 * area, and an all-white mask gives the plain Ghat = A^T A / N.
 */
import { VGG19_LAYERS } from './vgg.js';

/** The styles that share one mask, and the part of each painting to use. */
export interface StyleRegion<Image> {
  /** At the output's size; undefined = white (everywhere). */
  readonly mask?: Float32Array;
  /**
   * The region's styles; their weights sum to 1 within the region: its
   * target is sum_s weight_s Ghat_s, Ghat_s the style image's Gram under its
   * own `region` mask (the plain Gram where it has none).
   */
  readonly styles: ReadonlyArray<{ readonly image: Image; readonly weight: number; readonly region?: Float32Array }>;
}

/** True when every weight is 1: such a mask selects everything, exactly as no mask. */
export function isWhiteMask(mask: ArrayLike<number>): boolean {
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 1) return false;
  return true;
}

/** The mask as a backend should see it: undefined for none or a white one (so that white renders exactly as unmasked). */
export function effectiveMask(mask: Float32Array | undefined): Float32Array | undefined {
  return mask && !isWhiteMask(mask) ? mask : undefined;
}

function sameMask(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The regions of a batch item's styles: styles with equal masks (white or
 * absent counting as none) form one region, in the order of their first
 * style; weights renormalised within each region (kept as they are where
 * they already sum to 1, so that one unmasked region is exactly the
 * unmasked blend).
 */
export function styleRegions<Image>(
  styles: ReadonlyArray<{ readonly image: Image; readonly weight: number; readonly mask?: Float32Array; readonly region?: Float32Array }>,
): StyleRegion<Image>[] {
  const groups: Array<{ mask?: Float32Array; members: (typeof styles)[number][] }> = [];
  for (const s of styles) {
    const mask = effectiveMask(s.mask);
    const group = groups.find((g) => sameMask(g.mask, mask));
    if (group) group.members.push(s);
    else groups.push({ mask, members: [s] });
  }
  return groups.map(({ mask, members }) => {
    const total = members.reduce((sum, s) => sum + s.weight, 0);
    const styles = members.map((s) => ({
      image: s.image,
      weight: total === 1 ? s.weight : s.weight / total,
      ...(effectiveMask(s.region) ? { region: s.region } : {}),
    }));
    return mask ? { mask, styles } : { styles };
  });
}

/** 2x2 average pooling with TF SAME windows (the valid cells only), float64. */
function averagePool(m: Float64Array, h: number, w: number): { data: Float64Array; height: number; width: number } {
  const height = Math.ceil(h / 2);
  const width = Math.ceil(w / 2);
  const data = new Float64Array(height * width);
  for (let oy = 0; oy < height; oy++)
    for (let ox = 0; ox < width; ox++) {
      let sum = 0;
      let cells = 0;
      for (let y = 2 * oy; y < Math.min(2 * oy + 2, h); y++)
        for (let x = 2 * ox; x < Math.min(2 * ox + 2, w); x++) {
          sum += m[y * w + x];
          cells++;
        }
      data[oy * width + ox] = sum / cells;
    }
  return { data, height, width };
}

/**
 * The mask at each of `layers` (conv indices), keyed by index: the mask
 * average-pooled at each pooling before the layer (pooled in float64, stored
 * as float32), layerInputSize(index) positions each.
 */
export function maskAtLayers(mask: ArrayLike<number>, height: number, width: number, layers: readonly number[]): Map<number, Float32Array> {
  if (mask.length !== height * width)
    throw new Error(`maskAtLayers: a ${width}x${height} mask needs ${height * width} weights, got ${mask.length}`);
  const out = new Map<number, Float32Array>();
  const last = Math.max(-1, ...layers);
  let m: { data: Float64Array; height: number; width: number } = { data: Float64Array.from(mask), height, width };
  for (let i = 0; i <= last; i++) {
    if (layers.includes(i)) out.set(i, Float32Array.from(m.data));
    if (VGG19_LAYERS[i].poolAfter) m = averagePool(m.data, m.height, m.width);
  }
  return out;
}

/** sum_p m_p in float64: the normaliser of a guided Gram. */
export function maskMass(mask: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < mask.length; i++) s += mask[i];
  return s;
}
