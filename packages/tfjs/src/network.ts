/**
 * VGG-19 in TensorFlow.js ops: the weights live on the backend as tensors
 * (uploaded once), and `forward` runs conv + bias + ReLU (+ pooling between
 * blocks) up to the deepest layer asked for.
 */
import type { Tensor1D, Tensor4D } from '@tensorflow/tfjs';
import { VGG19_LAYERS } from '@nst/core';
import type { Pooling, WeightSet } from '@nst/core';
import type { Tf } from './load.js';

interface TfConv {
  readonly kernel: Tensor4D; // 3 x 3 x in x out (HWIO)
  /** The kernel turned 180 degrees with in and out swapped: 3 x 3 x out x in. */
  readonly flipped: Tensor4D;
  readonly bias: Tensor1D;
  /** x -> conv(x) (no bias) with a gradient to x only; see convolution(). */
  readonly convolve: (x: Tensor4D) => Tensor4D;
}

export class TfVgg {
  private readonly convs: TfConv[];
  /** Per-window 4 / (valid cells) factors of SAME avg pooling at odd sizes, by input size. */
  private readonly avgCorrections = new Map<string, Tensor4D>();

  constructor(
    private readonly tf: Tf,
    readonly weights: WeightSet,
  ) {
    this.convs = weights.layers.map((l) => {
      const kernel = tf.tensor4d(l.kernel, [3, 3, l.inChannels, l.outChannels]);
      const flipped = tf.tensor4d(flipKernel(l.kernel, l.inChannels, l.outChannels), [3, 3, l.outChannels, l.inChannels]);
      return { kernel, flipped, bias: tf.tensor1d(l.bias), convolve: this.convolution(kernel, flipped) };
    });
  }

  /**
   * A 3x3 stride-1 'same' convolution whose gradient is only d/dx, computed
   * as the same convolution with the flipped kernel (exact for stride 1 and
   * symmetric padding). The wasm backend's Conv2DBackpropInput runs about 10x
   * slower than its Conv2D (2.5 vs 25 GFLOP/s per thread at 128x128x64), and
   * tf.conv2d's own gradient would go through it.
   */
  private convolution(kernel: Tensor4D, flipped: Tensor4D): (x: Tensor4D) => Tensor4D {
    const tf = this.tf;
    const convolve = (x: Tensor4D) => ({
      value: tf.conv2d(x, kernel, 1, 'same'),
      gradFunc: (dy: Tensor4D) => tf.conv2d(dy, flipped, 1, 'same'),
    });
    return tf.customGrad(convolve as unknown as Parameters<Tf['customGrad']>[0]) as (x: Tensor4D) => Tensor4D;
  }

  /**
   * Post-ReLU activations of the layers in `wanted` (indices), running the
   * network only as deep as the deepest of them. Call inside tf.tidy.
   */
  forward(image: Tensor4D, pooling: Pooling, wanted: ReadonlySet<number>): Map<number, Tensor4D> {
    const last = Math.max(...wanted);
    // createSession checked the loss against the weight set (core's checkLayersAvailable).
    if (last >= this.convs.length) throw new Error(`forward: ${VGG19_LAYERS[last].name} is not in the weight set`);
    const tf = this.tf;
    const out = new Map<number, Tensor4D>();
    let x = image;
    for (let i = 0; i <= last; i++) {
      const { convolve, bias } = this.convs[i];
      const a = tf.relu(tf.add(convolve(x), bias)) as Tensor4D;
      if (wanted.has(i)) out.set(i, a);
      x = VGG19_LAYERS[i].poolAfter && i < last ? this.pool(a, pooling) : a;
    }
    return out;
  }

  /**
   * 2x2 stride-2 pooling with TensorFlow's SAME padding (odd n -> ceil(n/2),
   * padding at the bottom/right only). tf.maxPool 'same' is exact forward;
   * backward it is exact for the inputs it gets here, post-ReLU values >= 0
   * (the wasm MaxPoolGrad treats the padding as 0, which only matters for an
   * all-negative window). tf.avgPool 'same' averages the valid cells forward but its
   * gradient divides by 4 in the partial windows, so avg pooling is built from
   * ops whose gradients are exact: zero-pad to even, 'valid' average (sum / 4),
   * then scale each partial window by 4 / (its valid cells).
   */
  pool(x: Tensor4D, pooling: Pooling): Tensor4D {
    const tf = this.tf;
    if (pooling === 'max') return tf.maxPool(x, 2, 2, 'same');
    const [, h, w] = x.shape;
    if (h % 2 === 0 && w % 2 === 0) return tf.avgPool(x, 2, 2, 'valid');
    const padded = tf.pad(x, [
      [0, 0],
      [0, h % 2],
      [0, w % 2],
      [0, 0],
    ]);
    return tf.mul(tf.avgPool(padded, 2, 2, 'valid'), this.avgCorrection(h, w));
  }

  private avgCorrection(h: number, w: number): Tensor4D {
    const key = `${h}x${w}`;
    let factor = this.avgCorrections.get(key);
    if (!factor) {
      const oh = Math.ceil(h / 2);
      const ow = Math.ceil(w / 2);
      const values = new Float32Array(oh * ow);
      for (let y = 0; y < oh; y++)
        for (let x = 0; x < ow; x++) {
          const rows = Math.min(2, h - 2 * y);
          const cols = Math.min(2, w - 2 * x);
          values[y * ow + x] = 4 / (rows * cols);
        }
      factor = this.tf.keep(this.tf.tensor4d(values, [1, oh, ow, 1]));
      this.avgCorrections.set(key, factor);
    }
    return factor;
  }

  dispose(): void {
    for (const c of this.convs) {
      c.kernel.dispose();
      c.flipped.dispose();
      c.bias.dispose();
    }
    for (const f of this.avgCorrections.values()) f.dispose();
    this.avgCorrections.clear();
  }
}

/**
 * HWIO k[y][x][i][o] -> k'[2-y][2-x][o][i], once at upload (in JavaScript:
 * tf.reverse + tf.transpose take about 2 s per layer on the cpu backend).
 */
function flipKernel(kernel: Float32Array, inChannels: number, outChannels: number): Float32Array {
  const flipped = new Float32Array(kernel.length);
  for (let y = 0; y < 3; y++)
    for (let x = 0; x < 3; x++) {
      const from = (y * 3 + x) * inChannels * outChannels;
      const to = ((2 - y) * 3 + (2 - x)) * inChannels * outChannels;
      for (let i = 0; i < inChannels; i++)
        for (let o = 0; o < outChannels; o++) flipped[to + o * inChannels + i] = kernel[from + i * outChannels + o];
    }
  return flipped;
}
