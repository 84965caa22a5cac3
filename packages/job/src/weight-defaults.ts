import { formatLayers, type WeightSet } from '@nst/core';
import type { JobOptionValues } from './options.js';

/**
 * A weight set may say which loss layers it is meant for (a partial set such
 * as the embedded blocks 1-3 cannot use the notebook's conv4_2 and
 * conv5_1): those fill the layer options the user left out, and only those.
 * Returns the values to parse and the fields that were filled in.
 */
export function withWeightDefaults(values: JobOptionValues, weights: WeightSet): { values: JobOptionValues; filled: string[] } {
  const preset = weights.defaultLayers;
  if (!preset) return { values, filled: [] };
  const fill: Record<string, string> = {};
  if (values.contentLayers === undefined) fill.contentLayers = formatLayers(preset.contentLayers);
  if (values.styleLayers === undefined) fill.styleLayers = formatLayers(preset.styleLayers);
  return { values: { ...values, ...fill }, filled: Object.keys(fill) };
}
