import { UserError } from '@nst/core';
import type { JobOptionValues } from './options.js';

/**
 * Quality presets: option values that carry what each tradition found works.
 * A preset fills only the options the user did not give; the order is
 *   explicit options > quality preset > weight-set preset > defaults.
 *
 * jcjohnson: neural-style's defaults (github.com/jcjohnson/neural-style)
 * in this project's normalisation. neural-style's losses are, per layer of
 * C channels and N = H*W positions (caffe input space, as here):
 *   content: w * sum (a_C - a_G)^2 / (C N)                 (nn.MSECriterion)
 *   style:   w * sum (G_S - G_G)^2 / C^2, G = A A' / (C N)
 *   tv:      gradient of (w / 2) * sum of squared neighbour differences
 * and here (NST-SPEC, packages/core/src/loss.ts):
 *   content: alpha w_c sum (a_C - a_G)^2 / (4 C N)         -> alpha w_c = 4 w
 *   style:   beta w_l sum (Ghat_S - Ghat_G)^2 / (4 C^2), Ghat = A A' / N
 *            = beta w_l C^2 / 4 * neural-style's sum       -> beta w_l = 4 w / C^2
 *   tv:      tvWeight sum of squared differences           -> tvWeight = w / 2
 * so content_weight 5 on relu4_2 is alpha 5 with conv4_2:4, style_weight 100
 * on relu1_1..relu5_1 (C = 64, 128, 256, 512, 512) is beta 100 with weights
 * 4/C^2, and tv_weight 1e-3 is tvWeight 5e-4.
 */
export interface QualityPreset {
  readonly description: string;
  readonly values: JobOptionValues;
}

const styleLayers = (channels: Record<string, number>) =>
  Object.entries(channels)
    .map(([layer, c]) => `${layer}:${4 / (c * c)}`)
    .join(',');

/**
 * neural-style's loss weights (content, style, tv, layers) in this project's
 * normalisation: the balance tuned for L-BFGS run to convergence. The
 * notebook's alpha 10, beta 40 in Gatys et al.'s normalisation (content
 * 1/2 sum (F - P)^2, so alpha_G = alpha / (2 H W C) of conv4_2: 5.3e-6 at
 * 400x300; style per layer beta lambda = 8) is alpha_G / (beta w_l) = 6.6e-7,
 * where their ratios 1e-3 and 1e-4 with w_l = 1/5 give 5e-3 and 5e-4: style
 * weighs 750-7500x more. Its 200 Adam steps stop long before that matters,
 * but an L-BFGS run to convergence with it paints over the photo (seen on
 * the example: docs/quality).
 */
const NEURAL_STYLE_LOSS: JobOptionValues = {
  alpha: 5,
  beta: 100,
  tvWeight: 5e-4,
  contentLayers: 'conv4_2:4',
  styleLayers: styleLayers({ conv1_1: 64, conv2_1: 128, conv3_1: 256, conv4_1: 512, conv5_1: 512 }),
};

export const QUALITY_PRESETS: Readonly<Record<string, QualityPreset>> = {
  notebook: {
    description: "the notebook's method (NST-SPEC): Adam lr 2, 200 iterations, alpha 10, beta 40",
    values: {},
  },
  jcjohnson: {
    description: "neural-style's defaults: L-BFGS, 1000 iterations, content relu4_2 5e0, style relu1_1..relu5_1 1e2, tv 1e-3, noise init",
    values: { ...NEURAL_STYLE_LOSS, optimizer: 'lbfgs', lbfgsHistory: 100, iterations: 1000, pooling: 'max', init: 'random' },
  },
  hq: {
    description:
      "coarse to fine (scales a factor sqrt(2) apart from 256 px), L-BFGS, 300 iterations per scale, neural-style's content, style and tv weights",
    values: { ...NEURAL_STYLE_LOSS, optimizer: 'lbfgs', scales: 'auto', iterations: 300 },
  },
};

export const PRESET_NAMES = Object.keys(QUALITY_PRESETS);

/** The values with the preset's filled in where the user gave none (undefined or absent). */
export function applyPreset(values: JobOptionValues, preset: string | undefined): JobOptionValues {
  const name = preset ?? 'notebook';
  const chosen = QUALITY_PRESETS[name];
  if (!chosen) throw new UserError(`'${name}' is not a preset (${PRESET_NAMES.join(', ')})`, { field: 'preset' });
  const merged: Record<string, JobOptionValues[string]> = { ...chosen.values };
  for (const [key, v] of Object.entries(values)) if (v !== undefined) merged[key] = v;
  return merged;
}
