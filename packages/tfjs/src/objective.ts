/**
 * The loss of packages/core/src/loss.ts in TensorFlow.js ops, per batch item:
 *   content^[c] = sum (a - a_C)^2 / (4 N n_C)
 *   style^[l]   = sum (Ghat_S - Ghat)^2 / (4 n_C^2),   Ghat = A^T A / N
 *   tv          = sum (x[i+1,j] - x[i,j])^2 + (x[i,j+1] - x[i,j])^2
 *   temporal    = sum_p c(p) sum_ch (x - omega)^2 / (h w 3)        (video)
 * Targets are batched: content activations [N, h, w, C], blended style
 * Grams [N, C, C], and for video the warped previous frames omega [N, h, w, 3]
 * with their pixel weights c [N, h, w, 1] (0 for an item without one), one
 * slice per item.
 *
 * Spatial control (core's masks.ts): with style masks each item's style
 * term is a sum over its regions of the same formula on the guided Gram
 * (A o m)^T (A o m) / sum m, the mask m pooled to the layer; with a content
 * mask c the content term is sum c (a - a_C)^2 / (4 N n_C). Without them
 * (or with white ones, which core drops) nothing of this runs.
 */
import type { Scalar, Tensor1D, Tensor2D, Tensor3D, Tensor4D } from '@tensorflow/tfjs';
import { findLayer } from '@nst/core';
import type { LossSpec } from '@nst/core';
import type { Tf } from './load.js';

export interface TfTargets {
  readonly content: Map<number, Tensor4D>;
  /** Blended style Grams [N, C, C] per layer; unused where `regions` is set. */
  readonly style: Map<number, Tensor3D>;
  /** Style masks: per item, its regions. */
  readonly regions?: ReadonlyArray<readonly TfRegion[]>;
  /** Content mask: per content layer, the weights [N, h, w, 1] (1 for an item without one). */
  readonly contentMasks?: Map<number, Tensor4D>;
  /** Video, when the loss has a temporal weight. */
  readonly temporal?: { readonly image: Tensor4D; readonly weights: Tensor4D };
}

/** Conv-layer index of a loss layer name. */
export function layerIndex(name: string): number {
  const info = findLayer(name);
  if (!info) throw new Error(`unknown layer ${name}`);
  return info.index;
}

/** The conv layers whose activations the loss reads. */
export function lossLayers(spec: LossSpec): Set<number> {
  return new Set([...spec.contentLayers, ...spec.styleLayers].map((l) => layerIndex(l.layer)));
}

/** Ghat = A^T A / (h w) per item: [N, h, w, C] -> [N, C, C]. */
export function gram(tf: Tf, a: Tensor4D): Tensor3D {
  const [n, h, w, c] = a.shape;
  const unrolled = tf.reshape(a, [n, h * w, c]) as Tensor3D;
  return tf.div(tf.matMul(unrolled, unrolled, true, false), h * w) as Tensor3D;
}

/** One region of an item (masks.ts's StyleRegion at the session's layers). */
export interface TfRegion {
  /** Per style layer: the mask pooled to it [1, h, w, 1] and its mass; absent for a region without a mask. */
  readonly masks?: Map<number, { readonly mask: Tensor4D; readonly mass: number }>;
  /** Per style layer: the region's blended target [C, C]. */
  readonly targets: Map<number, Tensor2D>;
}

/** The guided Gram (A o m)^T (A o m) / mass of one item: [1, h, w, C], [1, h, w, 1] -> [C, C]. */
export function guidedGram(tf: Tf, a: Tensor4D, mask: Tensor4D, mass: number): Tensor2D {
  const [, h, w, c] = a.shape;
  const masked = tf.reshape(tf.mul(a, mask), [h * w, c]) as Tensor2D;
  return tf.div(tf.matMul(masked, masked, true, false), mass) as Tensor2D;
}

/** Elements summed per stage of perItemSum. */
const SUM_BLOCK = 64;

/**
 * Sum over every axis but the batch axis, in stages of SUM_BLOCK elements.
 * The wasm backend's Sum accumulates in float32 one element after another;
 * over a 512x512 Gram difference that loses about 1e-4 of the result, while
 * block-wise stages keep it near float32 precision (a few 1e-7).
 */
function perItemSum(tf: Tf, t: Tensor4D | Tensor3D): Tensor1D {
  const n = t.shape[0];
  let flat = tf.reshape(t, [n, -1]) as Tensor2D;
  while (flat.shape[1] > SUM_BLOCK) {
    const length = flat.shape[1];
    const blocks = Math.ceil(length / SUM_BLOCK);
    const padded =
      blocks * SUM_BLOCK === length
        ? flat
        : tf.pad(flat, [
            [0, 0],
            [0, blocks * SUM_BLOCK - length],
          ]);
    flat = tf.sum(tf.reshape(padded, [n, blocks, SUM_BLOCK]), 2) as Tensor2D;
  }
  return tf.sum(flat, 1) as Tensor1D;
}

function tvPerItem(tf: Tf, x: Tensor4D): Tensor1D {
  const [n, h, w, c] = x.shape;
  const down = tf.sub(tf.slice(x, [0, 1, 0, 0], [n, h - 1, w, c]), tf.slice(x, [0, 0, 0, 0], [n, h - 1, w, c])) as Tensor4D;
  const right = tf.sub(tf.slice(x, [0, 0, 1, 0], [n, h, w - 1, c]), tf.slice(x, [0, 0, 0, 0], [n, h, w - 1, c])) as Tensor4D;
  return tf.add(perItemSum(tf, tf.square(down) as Tensor4D), perItemSum(tf, tf.square(right) as Tensor4D)) as Tensor1D;
}

/** J_temporal per item: sum c (x - omega)^2 / (h w 3). */
function temporalPerItem(tf: Tf, x: Tensor4D, temporal: NonNullable<TfTargets['temporal']>): Tensor1D {
  const [, h, w, c] = x.shape;
  const weighted = tf.mul(tf.squaredDifference(x, temporal.image), temporal.weights) as Tensor4D;
  return tf.div(perItemSum(tf, weighted), h * w * c) as Tensor1D;
}

/**
 * The loss of each item as a [5, N] tensor, rows content, style, tv,
 * temporal, total (content and style before alpha and beta; temporal 0
 * without a temporal target). Call inside tf.tidy.
 */
export function lossParts(tf: Tf, spec: LossSpec, image: Tensor4D, acts: Map<number, Tensor4D>, targets: TfTargets): Tensor2D {
  const n = image.shape[0];
  let content: Tensor1D = tf.zeros([n]);
  for (const { layer, weight } of spec.contentLayers) {
    const i = layerIndex(layer);
    const a = acts.get(i)!;
    const [, h, w, c] = a.shape;
    let squares = tf.squaredDifference(a, targets.content.get(i)!) as Tensor4D;
    const mask = targets.contentMasks?.get(i);
    if (mask) squares = tf.mul(squares, mask) as Tensor4D;
    const j = tf.div(perItemSum(tf, squares), 4 * h * w * c);
    content = tf.add(content, tf.mul(j, weight));
  }
  let style: Tensor1D = tf.zeros([n]);
  for (const { layer, weight } of spec.styleLayers) {
    const i = layerIndex(layer);
    const a = acts.get(i)!;
    const c = a.shape[3];
    const j = targets.regions
      ? regionStyle(tf, a, i, targets.regions)
      : tf.div(perItemSum(tf, tf.squaredDifference(gram(tf, a), targets.style.get(i)!) as Tensor3D), 4 * c * c);
    style = tf.add(style, tf.mul(j, weight));
  }
  const tv = tvPerItem(tf, image);
  const temporal: Tensor1D = targets.temporal ? temporalPerItem(tf, image, targets.temporal) : tf.zeros([n]);
  const terms = [tf.mul(content, spec.alpha), tf.mul(style, spec.beta), tf.mul(tv, spec.tvWeight)];
  if (targets.temporal) terms.push(tf.mul(temporal, spec.temporalWeight ?? 0));
  const total = tf.addN(terms) as Tensor1D;
  return tf.stack([content, style, tv, temporal, total]) as Tensor2D;
}

/** The style term of layer i per item under its regions: sum over regions of sum (Ghat_m - T)^2 / (4 n_C^2). */
function regionStyle(tf: Tf, a: Tensor4D, i: number, regions: ReadonlyArray<readonly TfRegion[]>): Tensor1D {
  const [, h, w, c] = a.shape;
  const items = regions.map((itemRegions, b) => {
    const ab = tf.slice(a, [b, 0, 0, 0], [1, h, w, c]) as Tensor4D;
    const terms = itemRegions.flatMap((r) => {
      const m = r.masks?.get(i);
      // A region whose mask has no mass at this layer adds nothing.
      if (m && !(m.mass > 0)) return [];
      const g = m ? guidedGram(tf, ab, m.mask, m.mass) : (tf.reshape(gram(tf, ab), [c, c]) as Tensor2D);
      const squares = tf.reshape(tf.squaredDifference(g, r.targets.get(i)!), [1, c, c]) as Tensor3D;
      return [tf.div(perItemSum(tf, squares), 4 * c * c)];
    });
    return terms.length > 0 ? (tf.reshape(tf.addN(terms), []) as Scalar) : tf.scalar(0);
  });
  return tf.stack(items) as Tensor1D;
}
