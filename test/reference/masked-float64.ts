/**
 * Spatial control (issue 25), the mathematics in float64: a different style
 * in each region of the picture by guided Gram matrices (Gatys et al. 2017,
 * "Controlling Perceptual Factors in Neural Style Transfer"), and a content
 * loss weighted per pixel. The engines' masked losses are to be tested
 * against this, as the plain ones are against vgg-float64.ts, whose layers
 * and losses it reuses.
 *
 * Definitions (m a mask in [0, 1], white = 1, at the image's size):
 *   - A mask at layer l is the image's mask average-pooled at each pooling
 *     before l, as the network pools (TF SAME windows, so it stays aligned
 *     at odd sizes), whatever the network's own pooling (a mask is a weight,
 *     not a feature).
 *   - The guided Gram of activation A (N x nC) under mask m:
 *       Ghat_m = (A o m)^T (A o m) / mu,   mu = sum_p m_p  (the mask's mass),
 *     so that a region's style strength does not depend on its area, and an
 *     all-white mask gives the plain Ghat = A^T A / N.
 *   - Regions: the styles that share one mask form a region; its target is
 *     their blend, sum_s w_s Ghat_s / sum_s w_s, each Ghat_s the style image's
 *     Gram under its own region mask (white when it has none). A region's
 *     loss at a layer is the plain style loss's formula on Ghat_m:
 *       J = sum (Ghat_m - target)^2 / (4 nC^2),
 *       dJ/dA_pj = m_p^2 sum_i A_pi D_ij / (nC^2 mu),   D = Ghat_m - target,
 *     and the style loss is sum over layers of w_l sum over regions. One
 *     region under a white mask is exactly the unmasked loss; a layer where a
 *     region's mask has no mass adds nothing.
 *   - The content mask c weights the content loss per position:
 *       J = sum_p c_p sum_ch (a - a_C)^2 / (4 N nC).
 */
import type { LossValues, SessionOptions, WeightSet } from '@nst/core';
import { VGG19_LAYERS } from '@nst/core';
import { backward, deepest, forward, gradientAccumulator, layerIndex, pool2x2, tensor3, tvLoss, type Tensor3 } from './vgg-float64.js';

/** An image as the seam passes it: height x width x 3, float. */
interface Picture {
  readonly height: number;
  readonly width: number;
  readonly data: ArrayLike<number>;
}

/** One style: its image and blend weight, the mask where it applies in the output, and the part of the painting to use. */
export interface MaskedStyle {
  readonly image: Picture;
  readonly weight: number;
  /** At the output's size, 1 = this style applies; undefined = everywhere. */
  readonly mask?: Float64Array;
  /** At the style image's size, 1 = use this part; undefined = all of it. */
  readonly region?: Float64Array;
}

export interface MaskedTargets {
  readonly content: Picture;
  readonly styles: readonly MaskedStyle[];
  /** At the output's size, the content loss's weight per pixel; undefined = 1 everywhere. */
  readonly contentMask?: Float64Array;
}

/** The mask at each layer 0..lastIndex, average-pooled at each pooling as the network pools. */
export function maskAtLayers(mask: Float64Array, h: number, w: number, lastIndex: number): Float64Array[] {
  const out: Float64Array[] = [];
  let m = tensor3(h, w, 1, mask);
  for (let i = 0; i <= lastIndex; i++) {
    out.push(m.data);
    if (VGG19_LAYERS[i].poolAfter) m = pool2x2(m, 'avg');
  }
  return out;
}

/** Ghat_m = (A o m)^T (A o m) / sum m (c x c); undefined when the mask has no mass. */
export function guidedGram(a: Tensor3, m: Float64Array): Float64Array | undefined {
  const { c } = a;
  const mass = m.reduce((s, v) => s + v, 0);
  if (!(mass > 0)) return undefined;
  const g = new Float64Array(c * c);
  for (let p = 0; p < a.h * a.w; p++) {
    const m2 = m[p] * m[p];
    if (m2 === 0) continue;
    for (let i = 0; i < c; i++) {
      const ai = a.data[p * c + i] * m2;
      if (ai === 0) continue;
      for (let j = 0; j < c; j++) g[i * c + j] += ai * a.data[p * c + j];
    }
  }
  for (let k = 0; k < g.length; k++) g[k] /= mass;
  return g;
}

/** One region's style loss at one layer and dJ/dA (zero when the mask has no mass there). */
export function guidedStyleLoss(a: Tensor3, m: Float64Array, target: Float64Array): { loss: number; grad: Float64Array } {
  const { c } = a;
  const grad = new Float64Array(a.data.length);
  const diff = guidedGram(a, m);
  if (!diff) return { loss: 0, grad };
  const mass = m.reduce((s, v) => s + v, 0);
  let loss = 0;
  for (let k = 0; k < diff.length; k++) {
    diff[k] -= target[k];
    loss += (diff[k] * diff[k]) / (4 * c * c);
  }
  for (let p = 0; p < a.h * a.w; p++) {
    const m2 = m[p] * m[p];
    if (m2 === 0) continue;
    for (let j = 0; j < c; j++) {
      let s = 0;
      for (let i = 0; i < c; i++) s += a.data[p * c + i] * diff[i * c + j];
      grad[p * c + j] = (m2 * s) / (c * c * mass);
    }
  }
  return { loss, grad };
}

/** The content loss weighted per position by `weights` (the content mask at the layer) and dJ/da. */
export function weightedContentLoss(a: Tensor3, target: ArrayLike<number>, weights: Float64Array): { loss: number; grad: Float64Array } {
  const scale = 1 / (4 * a.h * a.w * a.c);
  const grad = new Float64Array(a.data.length);
  let loss = 0;
  for (let p = 0; p < a.h * a.w; p++)
    for (let ch = 0; ch < a.c; ch++) {
      const k = p * a.c + ch;
      const d = a.data[k] - target[k];
      loss += weights[p] * d * d * scale;
      grad[k] = 2 * weights[p] * d * scale;
    }
  return { loss, grad };
}

const white = (n: number) => new Float64Array(n).fill(1);
const maskKey = (m: Float64Array | undefined) => (m ? Array.from(m).join(',') : 'white');

interface Region {
  readonly mask: Float64Array;
  /** By layer index: the blended target. */
  readonly targets: Map<number, Float64Array>;
}

/** The regions (styles grouped by their mask) and each one's blended guided-Gram targets at the style layers. */
function regionsOf(weights: WeightSet, options: SessionOptions, targets: MaskedTargets, last: number): Region[] {
  const { height, width } = options;
  const groups = new Map<string, MaskedStyle[]>();
  for (const s of targets.styles) groups.set(maskKey(s.mask), [...(groups.get(maskKey(s.mask)) ?? []), s]);
  return [...groups.values()].map((styles) => {
    const total = styles.reduce((sum, s) => sum + s.weight, 0);
    const blended = new Map<number, Float64Array>();
    for (const s of styles) {
      const { height: h, width: w, data } = s.image;
      const recs = forward(weights, options.pooling, tensor3(h, w, 3, data), last);
      const regionAt = maskAtLayers(s.region ?? white(h * w), h, w, last);
      for (const { layer } of options.loss.styleLayers) {
        const i = layerIndex(layer);
        const g = guidedGram(recs[i].activation, regionAt[i]);
        if (!g) throw new Error(`reference: the style region has no mass at ${layer}`);
        const acc = blended.get(i) ?? new Float64Array(g.length);
        for (let k = 0; k < g.length; k++) acc[k] += (s.weight / total) * g[k];
        blended.set(i, acc);
      }
    }
    return { mask: styles[0].mask ?? white(height * width), targets: blended };
  });
}

/** Loss and dJ/d image of one image (options.height x options.width x 3) under masks. */
export function referenceMaskedItem(
  weights: WeightSet,
  options: SessionOptions,
  targets: MaskedTargets,
  image: Tensor3,
): { losses: LossValues; gradient: Float64Array } {
  const { loss: spec, pooling, height, width } = options;
  const last = deepest(spec);
  const recs = forward(weights, pooling, image, last);
  const { grads: gradAct, add: accumulate } = gradientAccumulator(recs.length);

  let content = 0;
  if (spec.contentLayers.length > 0) {
    const c = targets.content;
    const contentRecs = forward(weights, pooling, tensor3(c.height, c.width, 3, c.data), last);
    const weightAt = maskAtLayers(targets.contentMask ?? white(height * width), height, width, last);
    for (const { layer, weight } of spec.contentLayers) {
      const i = layerIndex(layer);
      const r = weightedContentLoss(recs[i].activation, contentRecs[i].activation.data, weightAt[i]);
      content += weight * r.loss;
      accumulate(i, r.grad, spec.alpha * weight);
    }
  }

  let style = 0;
  for (const region of regionsOf(weights, options, targets, last)) {
    const maskAt = maskAtLayers(region.mask, height, width, last);
    for (const { layer, weight } of spec.styleLayers) {
      const i = layerIndex(layer);
      const r = guidedStyleLoss(recs[i].activation, maskAt[i], region.targets.get(i)!);
      style += weight * r.loss;
      accumulate(i, r.grad, spec.beta * weight);
    }
  }

  const gradient = backward(weights, pooling, recs, gradAct).data;
  const tv = tvLoss(image);
  for (let k = 0; k < gradient.length; k++) gradient[k] += spec.tvWeight * tv.grad[k];
  return { losses: { content, style, tv: tv.loss, total: spec.alpha * content + spec.beta * style + spec.tvWeight * tv.loss }, gradient };
}
