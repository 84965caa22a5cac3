import { UserError } from './errors.js';
import { findLayer } from './vgg.js';

/** A VGG layer (the ReLU output of a convolution) with its weight in the loss. */
export interface WeightedLayer {
  /** conv1_1 .. conv5_4 */
  readonly layer: string;
  readonly weight: number;
}

/**
 * What the loss is made of (../shared/NST-SPEC.md):
 *   J = alpha * sum_c w_c * J_content^[c] + beta * sum_l w_l * J_style^[l] + tvWeight * J_tv
 *       (+ temporalWeight * J_temporal, video)
 * with, per layer of shape n_H x n_W x n_C (N = n_H * n_W),
 *   J_content = sum (a_C - a_G)^2 / (4 N n_C)
 *   J_style   = sum (Ghat_S - Ghat_G)^2 / (4 n_C^2),   Ghat = A A^T / N
 * (the Gram normalised by its own N: identical to the spec's 1/(4 n_C^2 N^2)
 * when style and content images have the same size, and still well defined
 * when the style image has another size), and
 *   J_tv = sum_{i,j,c} (x[i+1,j,c] - x[i,j,c])^2 + (x[i,j+1,c] - x[i,j,c])^2
 * on the image in network input space (0 by default, as in the notebook).
 *
 * Video (Ruder, Dosovitskiy and Brox 2016), against each batch item's
 * Targets.temporal (omega: the previous stylised frame warped by the optical
 * flow, c: a weight per pixel in 0..1, 0 at occlusions and motion boundaries):
 *   J_temporal = (1/D) sum_p c(p) sum_ch (x(p) - omega(p))^2,   D = H W 3
 * in network input space; d J_temporal / d x = 2 c (x - omega) / D. An item
 * without a temporal target has no such term.
 */
export interface LossSpec {
  readonly contentLayers: readonly WeightedLayer[];
  readonly styleLayers: readonly WeightedLayer[];
  readonly alpha: number;
  readonly beta: number;
  readonly tvWeight: number;
  /** Video only: the weight of J_temporal; absent or 0, no temporal term (and no buffers for it). */
  readonly temporalWeight?: number;
}

export const DEFAULT_LOSS: LossSpec = {
  contentLayers: [{ layer: 'conv4_2', weight: 1 }],
  styleLayers: ['conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv5_1'].map((layer) => ({ layer, weight: 0.2 })),
  alpha: 10,
  beta: 40,
  tvWeight: 0,
};

/** The loss of one image: content and style before alpha and beta, total after. */
export interface LossValues {
  /** sum_c w_c J_content^[c] (before alpha) */
  readonly content: number;
  /** sum_l w_l J_style^[l] (before beta) */
  readonly style: number;
  /** J_tv (before tvWeight) */
  readonly tv: number;
  /** J_temporal (before temporalWeight; video): present when the loss has a temporal weight. */
  readonly temporal?: number;
  /** alpha * content + beta * style + tvWeight * tv (+ temporalWeight * temporal) */
  readonly total: number;
}

/** Layers as a user writes them: 'conv4_2:1,conv5_1:0.2' (what the layer-list parser reads back). */
export function formatLayers(layers: readonly WeightedLayer[]): string {
  return layers.map((l) => `${l.layer}:${l.weight}`).join(',');
}

/**
 * Checks that a weight set holding the convolutions `layerNames` (a prefix
 * of VGG-19) has every layer the loss asks for; the error names the field,
 * the layer and what the set has. Every backend and the CLI use this one check.
 */
export function checkLayersAvailable(loss: LossSpec, layerNames: readonly string[], source: string): void {
  const range = `it has ${layerNames[0]} .. ${layerNames[layerNames.length - 1]}`;
  const check = (field: string, layers: readonly WeightedLayer[]) => {
    for (const l of layers)
      if (findLayer(l.layer)!.index >= layerNames.length)
        throw new UserError(`layer ${l.layer} is not in the weight set ${source} (${range})`, { code: 'not-found', field });
  };
  check('contentLayers', loss.contentLayers);
  check('styleLayers', loss.styleLayers);
}

/** Index of the deepest conv layer the loss needs: the network runs only up to it. */
export function deepestLayerIndex(spec: LossSpec): number {
  let deepest = 0;
  for (const l of [...spec.contentLayers, ...spec.styleLayers]) deepest = Math.max(deepest, findLayer(l.layer)!.index);
  return deepest;
}
