/**
 * A float64 reference of the whole objective, written with plain loops and
 * independently of every backend: the VGG-19 forward pass up to the deepest
 * layer the loss needs, the content, Gram-style, TV and (video) temporal
 * losses, and the backward pass to the image. Every backend's tests compare against it.
 *
 * Conventions (../../shared/NST-SPEC.md, packages/core/src/loss.ts):
 *   tensors are HWC row-major (one batch item at a time), kernels HWIO 3x3,
 *   convolutions stride 1 with zero "same" padding, ReLU after each conv,
 *   2x2 stride-2 pooling with TensorFlow SAME padding (odd n -> ceil(n/2), the
 *   last window padded at the bottom/right, avg over the valid elements only).
 * Slow by design (clarity over speed): fine for images up to ~32x32.
 */
import { adamUpdate, findLayer, VGG19_LAYERS } from '@nst/core';
import type { AdamConfig, ConvWeights, LossSpec, LossValues, Pooling, SessionOptions, Targets, WeightSet } from '@nst/core';

/** An activation (or image) of one batch item: h x w x c, row-major, float64. */
export interface Tensor3 {
  readonly h: number;
  readonly w: number;
  readonly c: number;
  readonly data: Float64Array;
}

export function tensor3(h: number, w: number, c: number, data?: ArrayLike<number>): Tensor3 {
  const t = { h, w, c, data: new Float64Array(h * w * c) };
  if (data) {
    if (data.length !== t.data.length) throw new Error(`tensor3: ${data.length} values for ${h}x${w}x${c}`);
    t.data.set(data);
  }
  return t;
}

// ---------------------------------------------------------------- layers

/** out[y,x,o] = b[o] + sum_{ky,kx,i} in[y+ky-1, x+kx-1, i] * k[ky,kx,i,o] (zero padding). */
export function conv3x3(input: Tensor3, kernel: Float64Array, bias: Float64Array, outC: number): Tensor3 {
  const { h, w, c: inC } = input;
  const out = tensor3(h, w, outC);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o0 = (y * w + x) * outC;
      for (let o = 0; o < outC; o++) out.data[o0 + o] = bias[o];
      for (let ky = 0; ky < 3; ky++) {
        const iy = y + ky - 1;
        if (iy < 0 || iy >= h) continue;
        for (let kx = 0; kx < 3; kx++) {
          const ix = x + kx - 1;
          if (ix < 0 || ix >= w) continue;
          const i0 = (iy * w + ix) * inC;
          const k0 = (ky * 3 + kx) * inC * outC;
          for (let i = 0; i < inC; i++) {
            const v = input.data[i0 + i];
            if (v === 0) continue; // post-ReLU inputs are often zero
            const ki = k0 + i * outC;
            for (let o = 0; o < outC; o++) out.data[o0 + o] += v * kernel[ki + o];
          }
        }
      }
    }
  }
  return out;
}

/** The transpose of conv3x3 with respect to its input: d in from d out. */
export function conv3x3BackwardData(gradOut: Tensor3, kernel: Float64Array, inC: number): Tensor3 {
  const { h, w, c: outC } = gradOut;
  const gradIn = tensor3(h, w, inC);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o0 = (y * w + x) * outC;
      for (let ky = 0; ky < 3; ky++) {
        const iy = y + ky - 1;
        if (iy < 0 || iy >= h) continue;
        for (let kx = 0; kx < 3; kx++) {
          const ix = x + kx - 1;
          if (ix < 0 || ix >= w) continue;
          const i0 = (iy * w + ix) * inC;
          const k0 = (ky * 3 + kx) * inC * outC;
          for (let i = 0; i < inC; i++) {
            const ki = k0 + i * outC;
            let s = 0;
            for (let o = 0; o < outC; o++) s += gradOut.data[o0 + o] * kernel[ki + o];
            gradIn.data[i0 + i] += s;
          }
        }
      }
    }
  }
  return gradIn;
}

export function relu(t: Tensor3): Tensor3 {
  const out = tensor3(t.h, t.w, t.c);
  for (let i = 0; i < t.data.length; i++) out.data[i] = t.data[i] > 0 ? t.data[i] : 0;
  return out;
}

/**
 * The input positions (flat indices into h x w) of pooling window (oy, ox):
 * rows 2oy, 2oy+1 and columns 2ox, 2ox+1 that exist (TF SAME: padding only
 * at the bottom/right, never counted).
 */
function poolWindow(h: number, w: number, oy: number, ox: number): number[] {
  const cells: number[] = [];
  for (let y = 2 * oy; y < Math.min(2 * oy + 2, h); y++) for (let x = 2 * ox; x < Math.min(2 * ox + 2, w); x++) cells.push(y * w + x);
  return cells;
}

export function pool2x2(input: Tensor3, pooling: Pooling): Tensor3 {
  const { h, w, c } = input;
  const out = tensor3(Math.ceil(h / 2), Math.ceil(w / 2), c);
  for (let oy = 0; oy < out.h; oy++) {
    for (let ox = 0; ox < out.w; ox++) {
      const cells = poolWindow(h, w, oy, ox);
      for (let ch = 0; ch < c; ch++) {
        const values = cells.map((p) => input.data[p * c + ch]);
        out.data[(oy * out.w + ox) * c + ch] = pooling === 'avg' ? values.reduce((a, b) => a + b, 0) / values.length : Math.max(...values);
      }
    }
  }
  return out;
}

/** Avg: spread evenly over the valid cells. Max: all to the (first) maximum. */
export function pool2x2Backward(input: Tensor3, gradOut: Tensor3, pooling: Pooling): Tensor3 {
  const { h, w, c } = input;
  const gradIn = tensor3(h, w, c);
  for (let oy = 0; oy < gradOut.h; oy++) {
    for (let ox = 0; ox < gradOut.w; ox++) {
      const cells = poolWindow(h, w, oy, ox);
      for (let ch = 0; ch < c; ch++) {
        const g = gradOut.data[(oy * gradOut.w + ox) * c + ch];
        if (pooling === 'avg') {
          for (const p of cells) gradIn.data[p * c + ch] += g / cells.length;
        } else {
          let best = cells[0];
          for (const p of cells) if (input.data[p * c + ch] > input.data[best * c + ch]) best = p;
          gradIn.data[best * c + ch] += g;
        }
      }
    }
  }
  return gradIn;
}

// ---------------------------------------------------------------- network

/** Kernels and biases converted to float64 once per weight set. */
const float64Cache = new WeakMap<ConvWeights, { kernel: Float64Array; bias: Float64Array }>();
function float64Weights(layer: ConvWeights) {
  let f = float64Cache.get(layer);
  if (!f) {
    f = { kernel: Float64Array.from(layer.kernel), bias: Float64Array.from(layer.bias) };
    float64Cache.set(layer, f);
  }
  return f;
}

/** What the backward pass needs of one conv layer. */
export interface LayerRecord {
  /** post-ReLU output */
  readonly activation: Tensor3;
}

/** Runs conv1_1 .. layers[lastIndex] (each conv + ReLU, pooling between blocks). */
export function forward(weights: WeightSet, pooling: Pooling, image: Tensor3, lastIndex: number): LayerRecord[] {
  if (lastIndex >= weights.layers.length)
    throw new Error(
      `reference: layer ${VGG19_LAYERS[lastIndex].name} is not in the weight set (it has ${weights.layers.map((l) => l.name).join(', ')})`,
    );
  const records: LayerRecord[] = [];
  let x = image;
  for (let i = 0; i <= lastIndex; i++) {
    const layer = weights.layers[i];
    const { kernel, bias } = float64Weights(layer);
    const activation = relu(conv3x3(x, kernel, bias, layer.outChannels));
    records.push({ activation });
    x = VGG19_LAYERS[i].poolAfter && i < lastIndex ? pool2x2(activation, pooling) : activation;
  }
  return records;
}

/**
 * d image from d activation of each layer (undefined = no loss there):
 * ReLU mask, conv backward-data, and pooling backward, from the deepest layer up.
 */
export function backward(
  weights: WeightSet,
  pooling: Pooling,
  records: LayerRecord[],
  gradActivations: ReadonlyArray<Float64Array | undefined>,
): Tensor3 {
  let gradAct: Float64Array | undefined;
  for (let i = records.length - 1; i >= 0; i--) {
    const { activation } = records[i];
    const fromLoss = gradActivations[i];
    const g = new Float64Array(activation.data.length);
    if (gradAct) g.set(gradAct);
    if (fromLoss) for (let j = 0; j < g.length; j++) g[j] += fromLoss[j];
    // ReLU: pass where the output is positive.
    for (let j = 0; j < g.length; j++) if (!(activation.data[j] > 0)) g[j] = 0;
    const layer = weights.layers[i];
    const gradInput = conv3x3BackwardData(
      tensor3(activation.h, activation.w, activation.c, g),
      float64Weights(layer).kernel,
      layer.inChannels,
    );
    if (i === 0) return gradInput;
    const prev = records[i - 1];
    gradAct = VGG19_LAYERS[i - 1].poolAfter ? pool2x2Backward(prev.activation, gradInput, pooling).data : gradInput.data;
  }
  throw new Error('reference: backward over no layers');
}

// ---------------------------------------------------------------- losses

/** Ghat = A^T A / N with A the N x nC unrolled activation (N = h w). */
export function gram(a: Tensor3): Float64Array {
  const n = a.h * a.w;
  const c = a.c;
  const g = new Float64Array(c * c);
  for (let p = 0; p < n; p++) {
    const row = p * c;
    for (let i = 0; i < c; i++) {
      const ai = a.data[row + i];
      if (ai === 0) continue;
      for (let j = 0; j < c; j++) g[i * c + j] += ai * a.data[row + j];
    }
  }
  for (let k = 0; k < g.length; k++) g[k] /= n;
  return g;
}

/** J_content = sum (a - aC)^2 / (4 N nC); returns J and dJ/da. */
export function contentLoss(a: Tensor3, target: Float64Array): { loss: number; grad: Float64Array } {
  const scale = 1 / (4 * a.h * a.w * a.c);
  const grad = new Float64Array(a.data.length);
  let loss = 0;
  for (let i = 0; i < grad.length; i++) {
    const d = a.data[i] - target[i];
    loss += d * d * scale;
    grad[i] = 2 * d * scale;
  }
  return { loss, grad };
}

/** J_style = sum (Ghat_S - Ghat)^2 / (4 nC^2); dJ/dA = A (Ghat - Ghat_S) / (nC^2 N). */
export function styleLoss(a: Tensor3, targetGram: Float64Array): { loss: number; grad: Float64Array } {
  const c = a.c;
  const n = a.h * a.w;
  const diff = gram(a);
  let loss = 0;
  for (let k = 0; k < diff.length; k++) {
    diff[k] -= targetGram[k];
    loss += (diff[k] * diff[k]) / (4 * c * c);
  }
  const grad = new Float64Array(a.data.length);
  for (let p = 0; p < n; p++) {
    for (let j = 0; j < c; j++) {
      let s = 0;
      for (let i = 0; i < c; i++) s += a.data[p * c + i] * diff[i * c + j];
      grad[p * c + j] = s / (c * c * n);
    }
  }
  return { loss, grad };
}

/** J_tv = sum (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2 over all channels; and dJ/dx. */
export function tvLoss(x: Tensor3): { loss: number; grad: Float64Array } {
  const { h, w, c } = x;
  const grad = new Float64Array(x.data.length);
  let loss = 0;
  const pair = (a: number, b: number) => {
    const d = x.data[b] - x.data[a];
    loss += d * d;
    grad[b] += 2 * d;
    grad[a] -= 2 * d;
  };
  for (let y = 0; y < h; y++)
    for (let xx = 0; xx < w; xx++)
      for (let ch = 0; ch < c; ch++) {
        const here = (y * w + xx) * c + ch;
        if (y + 1 < h) pair(here, here + w * c);
        if (xx + 1 < w) pair(here, here + c);
      }
  return { loss, grad };
}

/**
 * Video (Ruder et al. 2016): J_temporal = (1/D) sum_p c(p) sum_ch (x(p) - omega(p))^2,
 * D = h w c, against the warped previous frame omega and pixel weights c
 * (h x w); and dJ/dx = 2 c (x - omega) / D.
 */
export function temporalLoss(x: Tensor3, omega: ArrayLike<number>, weights: ArrayLike<number>): { loss: number; grad: Float64Array } {
  const { h, w, c } = x;
  const d = h * w * c;
  const grad = new Float64Array(x.data.length);
  let loss = 0;
  for (let p = 0; p < h * w; p++)
    for (let ch = 0; ch < c; ch++) {
      const k = p * c + ch;
      const diff = x.data[k] - omega[k];
      loss += (weights[p] * diff * diff) / d;
      grad[k] = (2 * weights[p] * diff) / d;
    }
  return { loss, grad };
}

// ---------------------------------------------------------------- the objective

export function layerIndex(name: string): number {
  const info = findLayer(name);
  if (!info) throw new Error(`reference: unknown layer ${name}`);
  return info.index;
}

export function deepest(spec: LossSpec): number {
  return Math.max(...[...spec.contentLayers, ...spec.styleLayers].map((l) => layerIndex(l.layer)));
}

/** d J / d activation per layer, summed term by term as the losses add them (`scale` times each term's gradient). */
export function gradientAccumulator(layers: number): {
  readonly grads: (Float64Array | undefined)[];
  add(i: number, g: Float64Array, scale: number): void;
} {
  const grads: (Float64Array | undefined)[] = Array.from({ length: layers }, () => undefined);
  return {
    grads,
    add(i, g, scale) {
      const acc = grads[i] ?? new Float64Array(g.length);
      for (let k = 0; k < g.length; k++) acc[k] += scale * g[k];
      grads[i] = acc;
    },
  };
}

/** A small loss to conv3_1 (a few layers: fast in float64) with every kind of term, for the reference's own tests. */
export const SMALL_LOSS: LossSpec = {
  contentLayers: [{ layer: 'conv2_2', weight: 1 }],
  styleLayers: [
    { layer: 'conv1_1', weight: 0.3 },
    { layer: 'conv2_1', weight: 0.3 },
    { layer: 'conv3_1', weight: 0.4 },
  ],
  alpha: 10,
  beta: 40,
  tvWeight: 0.01,
};

/** Content activations and blended style Grams of one batch item, keyed by layer index. */
export interface ReferenceTargets {
  readonly content: Map<number, Float64Array>;
  readonly style: Map<number, Float64Array>;
  /** Video: the warped previous frame (h x w x 3) and the pixel weights (h x w). */
  readonly temporal?: { readonly image: Float64Array; readonly weights: Float64Array };
}

export function referenceTargets(weights: WeightSet, options: SessionOptions, targets: Targets): ReferenceTargets {
  const { loss, pooling } = options;
  const last = deepest(loss);
  const content = new Map<number, Float64Array>();
  if (loss.contentLayers.length > 0) {
    const { height, width, data } = targets.content;
    const recs = forward(weights, pooling, tensor3(height, width, 3, data), last);
    for (const l of loss.contentLayers) content.set(layerIndex(l.layer), recs[layerIndex(l.layer)].activation.data);
  }
  const style = new Map<number, Float64Array>();
  for (const { image, weight } of targets.styles) {
    const recs = forward(weights, pooling, tensor3(image.height, image.width, 3, image.data), last);
    for (const l of loss.styleLayers) {
      const i = layerIndex(l.layer);
      const g = gram(recs[i].activation);
      const acc = style.get(i) ?? new Float64Array(g.length);
      for (let k = 0; k < g.length; k++) acc[k] += weight * g[k];
      style.set(i, acc);
    }
  }
  const temporal = targets.temporal && {
    image: Float64Array.from(targets.temporal.image.data),
    weights: Float64Array.from(targets.temporal.weights),
  };
  return { content, style, temporal };
}

/** Loss and d J / d image of one image (h x w x 3) against precomputed targets. */
export function referenceItem(
  weights: WeightSet,
  options: SessionOptions,
  targets: ReferenceTargets,
  image: Tensor3,
): { losses: LossValues; gradient: Float64Array } {
  const { loss: spec, pooling } = options;
  const last = deepest(spec);
  const recs = forward(weights, pooling, image, last);
  const { grads: gradAct, add: accumulate } = gradientAccumulator(recs.length);
  let content = 0;
  for (const { layer, weight } of spec.contentLayers) {
    const i = layerIndex(layer);
    const r = contentLoss(recs[i].activation, targets.content.get(i)!);
    content += weight * r.loss;
    accumulate(i, r.grad, spec.alpha * weight);
  }
  let style = 0;
  for (const { layer, weight } of spec.styleLayers) {
    const i = layerIndex(layer);
    const r = styleLoss(recs[i].activation, targets.style.get(i)!);
    style += weight * r.loss;
    accumulate(i, r.grad, spec.beta * weight);
  }
  const gradient = backward(weights, pooling, recs, gradAct).data;
  const tv = tvLoss(image);
  for (let k = 0; k < gradient.length; k++) gradient[k] += spec.tvWeight * tv.grad[k];
  let total = spec.alpha * content + spec.beta * style + spec.tvWeight * tv.loss;
  if (!spec.temporalWeight) return { losses: { content, style, tv: tv.loss, total }, gradient };
  // Video: an item without a temporal target has no temporal term.
  const temporal = targets.temporal ? temporalLoss(image, targets.temporal.image, targets.temporal.weights) : undefined;
  if (temporal) for (let k = 0; k < gradient.length; k++) gradient[k] += spec.temporalWeight * temporal.grad[k];
  total += spec.temporalWeight * (temporal?.loss ?? 0);
  return { losses: { content, style, tv: tv.loss, temporal: temporal?.loss ?? 0, total }, gradient };
}

/**
 * The whole objective for a batch (item by item): images is batch x H x W x 3
 * (NHWC), targets one per item. Returns per-item losses and the gradient,
 * batch x H x W x 3, in float64.
 */
export function referenceLossAndGradient(
  weights: WeightSet,
  options: SessionOptions,
  targets: readonly Targets[],
  images: Float32Array | Float64Array,
): { losses: LossValues[]; gradient: Float64Array } {
  const { batch, height, width } = options;
  const itemSize = height * width * 3;
  if (targets.length !== batch) throw new Error(`reference: ${targets.length} targets for batch ${batch}`);
  if (images.length !== batch * itemSize) throw new Error(`reference: ${images.length} image values for ${batch}x${height}x${width}x3`);
  const gradient = new Float64Array(images.length);
  const losses: LossValues[] = [];
  for (let b = 0; b < batch; b++) {
    const t = referenceTargets(weights, options, targets[b]);
    const image = tensor3(height, width, 3, images.subarray(b * itemSize, (b + 1) * itemSize));
    const r = referenceItem(weights, options, t, image);
    losses.push(r.losses);
    gradient.set(r.gradient, b * itemSize);
  }
  return { losses, gradient };
}

/** Loss only (same as referenceLossAndGradient without keeping the gradient). */
export function referenceLoss(
  weights: WeightSet,
  options: SessionOptions,
  targets: readonly Targets[],
  images: Float32Array | Float64Array,
): LossValues[] {
  return referenceLossAndGradient(weights, options, targets, images).losses;
}

/**
 * The optimisation every backend's iterate() must reproduce, in float64: one
 * Adam step (core's adamUpdate) per entry of stepSizes on the reference
 * gradient. Returns the losses at the start and after the last step, and the
 * final images and optimiser moments.
 */
export function referenceAdamTrajectory(
  weights: WeightSet,
  options: SessionOptions,
  targets: readonly Targets[],
  start: Float32Array | Float64Array,
  stepSizes: ArrayLike<number>,
  adam: AdamConfig,
): { first: LossValues[]; final: LossValues[]; images: Float64Array; m: Float64Array; v: Float64Array } {
  const images = Float64Array.from(start);
  const m = new Float64Array(images.length);
  const v = new Float64Array(images.length);
  let first: LossValues[] | undefined;
  for (let t = 0; t < stepSizes.length; t++) {
    const r = referenceLossAndGradient(weights, options, targets, images);
    first ??= r.losses;
    adamUpdate(images, r.gradient, m, v, stepSizes[t], adam);
  }
  const final = referenceLoss(weights, options, targets, images);
  return { first: first ?? final, final, images, m, v };
}
