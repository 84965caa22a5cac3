/**
 * The VGG-19 convolutional stack (Simonyan & Zisserman 2014, configuration E):
 * 16 convolutions of 3x3, stride 1, "same" padding, each followed by a ReLU,
 * with a 2x2 stride-2 pooling after the last convolution of blocks 1-4 (and 5,
 * which style transfer never needs). Layer names follow the MatConvNet
 * convention used by the notebook: conv<block>_<index>.
 */
export type Pooling = 'avg' | 'max';

export interface ConvLayerInfo {
  /** conv1_1 .. conv5_4 */
  readonly name: string;
  /** Position in the conv stack, 0 .. 15. */
  readonly index: number;
  readonly block: number;
  readonly inChannels: number;
  readonly outChannels: number;
  /** True when a 2x2 pooling follows this layer's ReLU (last conv of a block). */
  readonly poolAfter: boolean;
}

const BLOCKS: ReadonlyArray<{ convs: number; channels: number }> = [
  { convs: 2, channels: 64 },
  { convs: 2, channels: 128 },
  { convs: 4, channels: 256 },
  { convs: 4, channels: 512 },
  { convs: 4, channels: 512 },
];

export const VGG19_LAYERS: readonly ConvLayerInfo[] = (() => {
  const layers: ConvLayerInfo[] = [];
  let inChannels = 3;
  BLOCKS.forEach(({ convs, channels }, b) => {
    for (let i = 0; i < convs; i++) {
      layers.push({
        name: `conv${b + 1}_${i + 1}`,
        index: layers.length,
        block: b + 1,
        inChannels,
        outChannels: channels,
        poolAfter: i === convs - 1,
      });
      inChannels = channels;
    }
  });
  return layers;
})();

export const VGG19_LAYER_NAMES: readonly string[] = VGG19_LAYERS.map((l) => l.name);

/** The layer named `name`, or undefined. Accepts the Keras name (block3_conv1) too. */
export function findLayer(name: string): ConvLayerInfo | undefined {
  const m = /^block(\d)_conv(\d)$/.exec(name);
  const canonical = m ? `conv${m[1]}_${m[2]}` : name;
  return VGG19_LAYERS.find((l) => l.name === canonical);
}

/**
 * Spatial size of the input to conv layer `index` for an image of height x
 * width. Pooling is 2x2, stride 2, with TensorFlow's SAME padding, exactly as
 * the notebook (tf.nn.avg_pool(..., padding='SAME')): an odd size n gives
 * ceil(n / 2), the last window covering only the last row (column), padded at
 * the bottom (right); avg pooling averages the valid elements only, max
 * pooling takes their maximum. 300 x 400 -> 150x200 -> 75x100 -> 38x50 -> 19x25.
 */
export function layerInputSize(index: number, height: number, width: number): { height: number; width: number } {
  let h = height;
  let w = width;
  for (let i = 0; i < index; i++) {
    if (VGG19_LAYERS[i].poolAfter) {
      h = Math.ceil(h / 2);
      w = Math.ceil(w / 2);
    }
  }
  return { height: h, width: w };
}

/** Multiply-add FLOPs (2 per MAC) of the convolutions conv1_1..layers[last], forward, one image. */
export function forwardFlops(lastIndex: number, height: number, width: number): number {
  let flops = 0;
  for (let i = 0; i <= lastIndex; i++) {
    const { height: h, width: w } = layerInputSize(i, height, width);
    const l = VGG19_LAYERS[i];
    flops += 2 * h * w * l.inChannels * l.outChannels * 9;
  }
  return flops;
}
