import { UserError } from './errors.js';
import { deepestLayerIndex, type LossSpec } from './loss.js';
import { findLayer, layerInputSize, VGG19_LAYERS, type Pooling } from './vgg.js';

/*
 * Memory a render needs, counted from the VGG-19 table before anything is
 * allocated. Pure arithmetic in floats; each backend states how many copies
 * of each family it keeps (its MemoryProfile) and turns the count into bytes.
 */

/** Floats in the feature maps of one image through conv1_1 .. conv[lastIndex]. */
export interface NetworkFloats {
  /** Every layer's post-ReLU output, plus each pooled map a later layer reads. */
  readonly activations: number;
  /** The largest single map (gradient buffers are this size). */
  readonly largestMap: number;
}

export function networkFloats(lastIndex: number, height: number, width: number): NetworkFloats {
  let activations = 0;
  let largestMap = 0;
  for (let i = 0; i <= lastIndex; i++) {
    const { height: h, width: w } = layerInputSize(i, height, width);
    const map = h * w * VGG19_LAYERS[i].outChannels;
    activations += map;
    largestMap = Math.max(largestMap, map);
    if (VGG19_LAYERS[i].poolAfter && i < lastIndex) activations += Math.ceil(h / 2) * Math.ceil(w / 2) * VGG19_LAYERS[i].outChannels;
  }
  return { activations, largestMap };
}

/** Floats of the kernels and biases of conv1_1 .. conv[lastIndex]. */
export function weightFloats(lastIndex: number): number {
  let n = 0;
  for (let i = 0; i <= lastIndex; i++) n += 9 * VGG19_LAYERS[i].inChannels * VGG19_LAYERS[i].outChannels + VGG19_LAYERS[i].outChannels;
  return n;
}

/** What a memory estimate is about: the session's size, pooling and loss, and the size each style image is resized to. */
export interface MemoryShape {
  readonly height: number;
  readonly width: number;
  readonly batch: number;
  /** Max pooling keeps workspaces that average pooling does not need. */
  readonly pooling: Pooling;
  readonly loss: LossSpec;
  readonly styleSizes: readonly { readonly height: number; readonly width: number }[];
  /** Spatial control (masks.ts): the most style regions of a batch item when style masks or regions are used (absent or 0: none). */
  readonly regions?: number;
  /** Spatial control: whether a batch item has a content mask. */
  readonly contentMask?: boolean;
}

/** How many copies of each family of buffers a backend holds at its peak. */
export interface MemoryProfile {
  /** Copies of the weights (as given, plus reordered ones). */
  readonly weightCopies: number;
  /** Per image: the image, Adam m and v, the gradient, staging, ...: copies of H x W x 3. */
  readonly imageCopies: number;
  /** Copies of the network's activations per image while optimising (forward outputs kept for backward, gradients). */
  readonly activationCopies: number;
  /** Extra buffers the size of the largest map, per image (gradient ping-pong, layout conversions). */
  readonly largestMapCopies: number;
  /** Copies of a style image's activations while its Gram targets are computed (forward only). */
  readonly styleForwardCopies: number;
}

/** Floats per family, and their sum: the estimated peak of one session with its targets. */
export interface MemoryCount {
  readonly weights: number;
  readonly images: number;
  readonly contentTargets: number;
  readonly styleTargets: number;
  readonly optimising: number;
  readonly styleForward: number;
  readonly total: number;
}

/**
 * Counts the floats of a session at its peak: the weights, the images and
 * their optimiser state, the content targets (each content layer's map per
 * image) and the style targets (a C x C Gram per style layer per image, plus
 * one gradient Gram per layer), the optimising network, and the forward pass
 * over the largest style image. The last two are added, not maxed: a backend
 * may keep the style network's buffers while the session's exist, and an
 * estimate that errs should err high.
 */
export function countMemory(shape: MemoryShape, profile: MemoryProfile): MemoryCount {
  const last = deepestLayerIndex(shape.loss);
  const mapOf = (name: string, h: number, w: number) => {
    const i = findLayer(name)!.index;
    const s = layerInputSize(i, h, w);
    return s.height * s.width * VGG19_LAYERS[i].outChannels;
  };
  const net = networkFloats(last, shape.height, shape.width);
  const weights = profile.weightCopies * weightFloats(last);
  const images = profile.imageCopies * shape.batch * shape.height * shape.width * 3;
  const contentTargets = shape.batch * shape.loss.contentLayers.reduce((n, l) => n + mapOf(l.layer, shape.height, shape.width), 0);
  const grams = shape.loss.styleLayers.reduce((n, l) => n + VGG19_LAYERS[findLayer(l.layer)!.index].outChannels ** 2, 0);
  const styleTargets = (shape.batch + 1) * grams;
  const optimising = shape.batch * (profile.activationCopies * net.activations + profile.largestMapCopies * net.largestMap);
  let styleForward = 0;
  const styleLast = shape.loss.styleLayers.reduce((m, l) => Math.max(m, findLayer(l.layer)!.index), 0);
  for (const s of shape.styleSizes)
    styleForward = Math.max(styleForward, profile.styleForwardCopies * networkFloats(styleLast, s.height, s.width).activations);
  const total = weights + images + contentTargets + styleTargets + optimising + styleForward;
  return { weights, images, contentTargets, styleTargets, optimising, styleForward, total };
}

/**
 * The largest size with the same aspect ratio (style sizes scaled alike)
 * whose estimate fits `available` bytes; undefined when not even 1 x 1 fits.
 * `estimate` must grow with the size (all of the above do).
 */
export function largestFittingSize(
  shape: MemoryShape,
  estimate: (shape: MemoryShape) => number,
  available: number,
): { height: number; width: number } | undefined {
  const scaled = (f: number): MemoryShape => {
    const s = (x: number) => Math.max(1, Math.floor(x * f));
    return {
      ...shape,
      height: s(shape.height),
      width: s(shape.width),
      styleSizes: shape.styleSizes.map((z) => ({ height: s(z.height), width: s(z.width) })),
    };
  };
  if (estimate(scaled(0)) > available) return undefined;
  let lo = 0;
  let hi = 1;
  for (let k = 0; k < 40; k++) {
    const mid = (lo + hi) / 2;
    if (estimate(scaled(mid)) <= available) lo = mid;
    else hi = mid;
  }
  const fit = scaled(lo);
  return { height: fit.height, width: fit.width };
}

/**
 * The one refusal of a job too large for the memory available, wherever it
 * is found (the job layer before a run, an engine that plans device memory at
 * session creation): the estimate, what is available and the largest size at
 * the same aspect (and batch) that fits, by `estimate`.
 */
export function memoryRefusal(
  backendName: string,
  shape: MemoryShape,
  needed: number,
  available: number,
  estimate: (shape: MemoryShape) => number,
): UserError {
  const fit = largestFittingSize(shape, estimate, available);
  const styles = shape.styleSizes.some((s) => s.width !== shape.width || s.height !== shape.height)
    ? ` with style images up to ${Math.max(...shape.styleSizes.map((s) => s.width))}x${Math.max(...shape.styleSizes.map((s) => s.height))}`
    : '';
  const need = Number.isFinite(needed) ? `needs about ${formatBytes(needed)}` : 'is beyond what the engine can describe at any memory';
  return new UserError(
    `${shape.width}x${shape.height}${shape.batch > 1 ? ` batch ${shape.batch}` : ''}${styles} ${need} on the ${backendName} backend ` +
      `but ${formatBytes(available)} of memory is available; ` +
      (fit ? `the largest size that fits is about ${fit.width}x${fit.height}` : 'not even the smallest size fits'),
    { code: 'too-large', field: 'size' },
  );
}

/** 1536 -> '1.5 KiB'. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} bytes` : `${v.toFixed(1)} ${units[u]}`;
}
