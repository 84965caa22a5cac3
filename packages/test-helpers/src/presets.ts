import { DEFAULT_LOSS, type LossSpec, type WeightedLayer } from '@nst/core';

/**
 * The loss of ../shared/README.md for the real blocks 1-3 weights (conv1_1 ..
 * conv3_4): style on conv1_1, conv2_1, conv3_1, content on conv3_2, the
 * notebook's alpha and beta.
 */
export const REDUCED_LOSS: LossSpec = {
  ...DEFAULT_LOSS,
  contentLayers: [{ layer: 'conv3_2', weight: 1 }],
  styleLayers: [
    { layer: 'conv1_1', weight: 0.34 },
    { layer: 'conv2_1', weight: 0.33 },
    { layer: 'conv3_1', weight: 0.33 },
  ],
};

const layerList = (layers: readonly WeightedLayer[]) => layers.map((l) => `${l.layer}:${l.weight}`).join(',');

/** REDUCED_LOSS's layers as `nst render` flags. */
export const REDUCED_FLAGS: readonly string[] = [
  '--style-layers',
  layerList(REDUCED_LOSS.styleLayers),
  '--content-layers',
  layerList(REDUCED_LOSS.contentLayers),
];
