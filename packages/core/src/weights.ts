import type { WeightedLayer } from './loss.js';
import { VGG19_LAYERS } from './vgg.js';

/**
 * How a weight set expects its input: the image as RGB pixels p in 0..255 is
 * reordered to `channelOrder`, then x = (p * scale / 255 - mean) / std per
 * channel, with `mean` and `std` listed in the network's channel order.
 *   caffe (Keras, MatConvNet, caffe .pth): scale 255, std 1, mean per channel
 *   torchvision: RGB, scale 1, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]
 */
export interface Preprocessing {
  readonly name: string;
  readonly channelOrder: 'rgb' | 'bgr';
  readonly scale: number;
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

export const PREPROCESSING = {
  /** Keras / Caffe: BGR, 0..255, minus the mean pixel (B, G, R). */
  caffeBgr: {
    name: 'caffe-bgr',
    channelOrder: 'bgr',
    scale: 255,
    mean: [103.939, 116.779, 123.68],
    std: [1, 1, 1],
  },
  /** MatConvNet (the notebook's file): RGB, 0..255, minus the mean pixel (R, G, B). */
  caffeRgb: {
    name: 'caffe-rgb',
    channelOrder: 'rgb',
    scale: 255,
    mean: [123.68, 116.779, 103.939],
    std: [1, 1, 1],
  },
  /** torchvision's ImageNet normalisation. */
  torchvision: {
    name: 'torchvision',
    channelOrder: 'rgb',
    scale: 1,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
  },
} as const satisfies Record<string, Preprocessing>;

/** One convolution's parameters, in the layout every backend receives. */
export interface ConvWeights {
  /** VGG-19 name, conv1_1 .. conv5_4. */
  readonly name: string;
  readonly inChannels: number;
  readonly outChannels: number;
  /** 3 x 3 x in x out (HWIO, Keras/TensorFlow order), row-major, float32. */
  readonly kernel: Float32Array;
  /** out */
  readonly bias: Float32Array;
}

/**
 * A loaded VGG-19 weight set: a prefix of the conv stack (conv1_1 .. some
 * layer), in network order, plus the preprocessing the set was trained with.
 */
export interface WeightSet {
  readonly layers: readonly ConvWeights[];
  readonly preprocessing: Preprocessing;
  /** Where it came from, for messages: a path, or `random:SEED`. */
  readonly source: string;
  /** The format it was read from (tfjs-layers, keras-h5, matconvnet, pth, safetensors, random). */
  readonly format: string;
  /** SHA-256 of the source file when known. */
  readonly sha256?: string;
  /**
   * The loss layers the set is meant for, used where the user names none: a
   * set that stops before conv4_2 (the embedded blocks 1-3) cannot take the
   * notebook's. Absent: the notebook's (DEFAULT_LOSS).
   */
  readonly defaultLayers?: DefaultLayers;
}

export interface DefaultLayers {
  readonly contentLayers: readonly WeightedLayer[];
  readonly styleLayers: readonly WeightedLayer[];
}

/** Throws (with a message naming the layer) unless `w` is a well-formed prefix of VGG-19. */
export function validateWeightSet(w: WeightSet): void {
  if (w.layers.length === 0) throw new Error(`${w.source}: the weight set holds no convolution layers`);
  if (w.layers.length > VGG19_LAYERS.length) throw new Error(`${w.source}: more than 16 convolution layers`);
  w.layers.forEach((l, i) => {
    const want = VGG19_LAYERS[i];
    if (l.name !== want.name) throw new Error(`${w.source}: layer ${i} is ${l.name}, expected ${want.name}`);
    if (l.inChannels !== want.inChannels || l.outChannels !== want.outChannels)
      throw new Error(
        `${w.source}: ${l.name} has ${l.inChannels}->${l.outChannels} channels, VGG-19 has ${want.inChannels}->${want.outChannels}`,
      );
    if (l.kernel.length !== 9 * l.inChannels * l.outChannels)
      throw new Error(`${w.source}: ${l.name} kernel has ${l.kernel.length} values, expected ${9 * l.inChannels * l.outChannels}`);
    if (l.bias.length !== l.outChannels)
      throw new Error(`${w.source}: ${l.name} bias has ${l.bias.length} values, expected ${l.outChannels}`);
  });
}
