import { VGG19_LAYERS, type ConvWeights } from '@nst/core';
import { check, fail } from './errors.js';

/** One convolution as read from a file, already in HWIO order. */
export interface RawConv {
  readonly kernel: Float32Array;
  readonly bias: Float32Array;
}

/** conv1_1 for "block1_conv1", "conv1_1", "vgg19/block1_conv1" ...; undefined for anything else. */
export function canonicalConvName(name: string): string | undefined {
  const m = /(?:^|[^A-Za-z0-9])(?:block(\d)_conv(\d)|conv(\d)_(\d))$/.exec(name);
  if (!m) return undefined;
  const canonical = m[1] ? `conv${m[1]}_${m[2]}` : `conv${m[3]}_${m[4]}`;
  return VGG19_LAYERS.some((l) => l.name === canonical) ? canonical : undefined;
}

/**
 * Splits a parameter name such as "block1_conv1/kernel", "block1_conv1/kernel:0",
 * "conv1_1.bias" or "vgg19/block3_conv4/bias" into the conv layer and the
 * parameter kind; undefined when it is not a VGG-19 conv parameter.
 */
export function parseParamName(name: string): { conv: string; kind: 'kernel' | 'bias' } | undefined {
  const m = /^(.*)[/.](kernel|bias|weights|weight|filters|biases)(?::0)?$/.exec(name);
  if (!m) return undefined;
  const conv = canonicalConvName(m[1]);
  if (!conv) return undefined;
  return { conv, kind: m[2] === 'bias' || m[2] === 'biases' ? 'bias' : 'kernel' };
}

export const LAYER_BY_NAME = new Map(VGG19_LAYERS.map((l) => [l.name, l]));

/** The VGG-19 (in, out) of conv layer `name`. */
export function layerShape(name: string): { inChannels: number; outChannels: number } {
  const l = LAYER_BY_NAME.get(name);
  if (!l) fail(`${name} is not a VGG-19 convolution layer`);
  return l;
}

/** Throws unless `shape` equals `want` (kernel and bias shapes, for messages naming the layer). */
export function checkShape(layer: string, what: string, shape: readonly number[], want: readonly number[]): void {
  const same = shape.length === want.length && shape.every((d, i) => d === want[i]);
  check(same, () => `${layer} ${what} has shape [${shape.join(', ')}], VGG-19 needs [${want.join(', ')}]`);
}

/**
 * Gathers a 3x3xIxO kernel into HWIO row-major order from `src` laid out with
 * the given element strides for (h, w, i, o) starting at `offset`; every
 * format's layout is one choice of strides (Keras HWIO, PyTorch OIHW,
 * MatConvNet column-major HxWxIxO). The caller has checked the extent.
 */
export function gatherHWIO(
  src: ArrayLike<number>,
  offset: number,
  strides: readonly [number, number, number, number],
  inChannels: number,
  outChannels: number,
): Float32Array {
  const [sh, sw, si, so] = strides;
  const maxIndex = offset + 2 * sh + 2 * sw + (inChannels - 1) * si + (outChannels - 1) * so;
  check(offset >= 0 && maxIndex < src.length, `kernel data ends at element ${maxIndex}, past the ${src.length} stored`);
  const out = new Float32Array(9 * inChannels * outChannels);
  let k = 0;
  for (let h = 0; h < 3; h++)
    for (let w = 0; w < 3; w++)
      for (let i = 0; i < inChannels; i++) {
        const base = offset + h * sh + w * sw + i * si;
        for (let o = 0; o < outChannels; o++) out[k++] = src[base + o * so];
      }
  return out;
}

/** Contiguous strides (h, w, i, o) of common layouts. */
export const STRIDES = {
  /** Keras / TensorFlow: (3, 3, in, out) row-major. */
  hwio: (i: number, o: number) => [3 * i * o, i * o, o, 1] as const,
  /** PyTorch: (out, in, 3, 3) row-major. */
  oihw: (i: number, _o: number) => [3, 1, 9, 9 * i] as const,
  /** MATLAB: H x W x in x out, column-major (first index fastest). */
  matlab: (i: number, _o: number) => [1, 3, 9, 9 * i] as const,
};

/**
 * Orders the conv layers found in a file into a VGG-19 prefix (conv1_1 ..
 * last present), checking that nothing is missing in between and that no
 * value is NaN or infinite (a corrupt file, or one that would silently poison
 * every image).
 */
export function orderLayers(found: ReadonlyMap<string, RawConv>): ConvWeights[] {
  const layers: ConvWeights[] = [];
  for (const info of VGG19_LAYERS) {
    const conv = found.get(info.name);
    if (!conv) break;
    checkFinite(info.name, 'kernel', conv.kernel);
    checkFinite(info.name, 'bias', conv.bias);
    layers.push({ name: info.name, inChannels: info.inChannels, outChannels: info.outChannels, kernel: conv.kernel, bias: conv.bias });
  }
  if (layers.length === 0)
    fail(found.size === 0 ? 'holds no VGG-19 convolution layers' : `has ${[...found.keys()].join(', ')} but not conv1_1`);
  const after = [...found.keys()].filter((n) => !layers.some((l) => l.name === n));
  if (after.length > 0) fail(`has ${after.join(', ')} but lacks ${VGG19_LAYERS[layers.length].name}, which comes before`);
  return layers;
}

function checkFinite(layer: string, what: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++)
    if (!Number.isFinite(values[i])) fail(`${layer} ${what} holds a non-finite value (${values[i]}) at index ${i}`);
}

/**
 * torchvision's VGG-19 `features` Sequential: conv, ReLU, (pool) ... so conv k
 * sits at index 0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34.
 */
export const TORCH_FEATURE_INDEX: ReadonlyMap<number, string> = (() => {
  const map = new Map<number, string>();
  let index = 0;
  for (const l of VGG19_LAYERS) {
    map.set(index, l.name);
    index += l.poolAfter ? 3 : 2;
  }
  return map;
})();

/** "features.0.weight" -> conv1_1 kernel; undefined for other names. */
export function parseTorchName(name: string): { conv: string; kind: 'kernel' | 'bias' } | undefined {
  const m = /(?:^|\.)features\.(\d+)\.(weight|bias)$/.exec(name);
  const conv = m ? TORCH_FEATURE_INDEX.get(Number(m[1])) : undefined;
  return conv ? { conv, kind: m![2] === 'weight' ? 'kernel' : 'bias' } : undefined;
}
