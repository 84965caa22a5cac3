import type { ImageTensor } from './backend.js';
import type { LbfgsBounds } from './lbfgs.js';
import type { RgbLevels } from './colour.js';
import type { Preprocessing } from './weights.js';

/** 8-bit RGB pixels, row-major, 3 bytes per pixel. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/**
 * Pixels (RGB, 0..255) to the network's input space: channel order, scale,
 * mean and std of the weight set. The inverse is toPixels.
 */
export function toNetworkSpace(image: RgbImage | RgbLevels, pre: Preprocessing): ImageTensor {
  const n = image.width * image.height;
  const out = new Float32Array(n * 3);
  const order = pre.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const src = order[c];
    const mul = pre.scale / 255 / pre.std[c];
    const add = -pre.mean[c] / pre.std[c];
    for (let i = 0; i < n; i++) out[3 * i + c] = image.data[3 * i + src] * mul + add;
  }
  return { width: image.width, height: image.height, data: out };
}

/** Network space back to RGB pixels, rounded and clipped to 0..255. */
export function toPixels(tensor: ImageTensor, pre: Preprocessing): RgbImage {
  const levels = toLevels(tensor, pre);
  const out = new Uint8Array(levels.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = Math.round(levels.data[i]);
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return { width: tensor.width, height: tensor.height, data: out };
}

/** Network space back to RGB levels 0..255, neither rounded nor clipped (for 16-bit output and colour work). */
export function toLevels(tensor: ImageTensor, pre: Preprocessing): { width: number; height: number; data: Float64Array } {
  const n = tensor.width * tensor.height;
  const out = new Float64Array(n * 3);
  const order = pre.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const dst = order[c];
    const mul = (pre.std[c] * 255) / pre.scale;
    const add = (pre.mean[c] * 255) / pre.scale;
    for (let i = 0; i < n; i++) out[3 * i + dst] = tensor.data[3 * i + c] * mul + add;
  }
  return { width: tensor.width, height: tensor.height, data: out };
}

/**
 * How many network-space units one pixel level (1/255 of the range) is, per
 * network channel: 1 for the Caffe sets, about 1/57 for torchvision's.
 */
export function pixelUnit(pre: Preprocessing): [number, number, number] {
  return [0, 1, 2].map((c) => pre.scale / 255 / pre.std[c]) as [number, number, number];
}

/**
 * The pixel range 0..255 in network space, per network channel: what
 * toPixels keeps of an image (for an optimiser that should stay inside it).
 */
export function pixelBounds(pre: Preprocessing): LbfgsBounds {
  const lower = [0, 1, 2].map((c) => -pre.mean[c] / pre.std[c]);
  const upper = [0, 1, 2].map((c) => (pre.scale - pre.mean[c]) / pre.std[c]);
  return { lower, upper };
}
