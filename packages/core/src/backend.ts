import type { AdamConfig } from './adam.js';
import type { LbfgsConfig, VectorOps } from './lbfgs.js';
import type { LbfgsRun } from './lbfgs-session.js';
import type { LossSpec, LossValues } from './loss.js';
import type { MemoryShape } from './memory.js';
import type { Rect } from './tiling.js';
import type { Pooling } from './vgg.js';
import type { WeightSet } from './weights.js';

/**
 * The seam every backend (tfjs, native cpu, native cuda) implements.
 *
 * Tensors cross it as float32 NHWC (batch, height, width, channels), already
 * in the weight set's input space (core does all pre- and post-processing).
 * A backend keeps the weights, the targets, the image being optimised and the
 * Adam moments on its own device; the hot loop (forward, losses, backward,
 * Adam update) never returns to JavaScript per pixel.
 */
export interface Backend {
  /** Short id: 'tfjs', 'cpu', 'cuda'. */
  readonly name: string;
  /** What actually runs, for the user: "tfjs (wasm, 2 threads)", "cpu (oneDNN 2.6, 2 threads)". */
  readonly detail: string;
  /**
   * Whether its sessions implement spatial control (masks.ts): the style
   * masks, the style images' regions and the content mask of Targets. A
   * backend without it must never be handed a masked job: the job layer
   * refuses one (UserError 'unsupported') rather than render it unmasked.
   * Tile sessions take no masks, whatever this says.
   */
  readonly supportsMasks?: boolean;
  /** Uploads the weights once; sessions share them. */
  loadWeights(weights: WeightSet): Promise<void>;
  /**
   * Estimated peak bytes that a session of this shape, with its targets,
   * needs in the memory the backend computes in (host memory for cpu and
   * tfjs, device memory for cuda), from the backend's own plan of its
   * buffers; Infinity when the backend cannot take the shape at any memory
   * (a tensor beyond what its libraries can describe). The job layer refuses
   * a job whose estimate exceeds what is available before anything is
   * allocated, sizes batches with it and searches the largest size that fits.
   */
  estimateMemory(shape: MemoryShape): number;
  /**
   * Bytes the backend may still allocate, when it computes in a device's
   * memory (cuda: the GPU's free memory). Absent: it computes in host memory,
   * which the job layer measures itself (free memory, the cgroup's limit).
   */
  deviceMemoryAvailable?(): number;
  /** A session for N images of one size, with a fixed loss. Requires loadWeights first. */
  createSession(options: SessionOptions): Promise<Session>;
  /**
   * Optional: exact tiling (packages/core/src/tiling.ts has the mathematics),
   * for images beyond what one session can hold. A backend that has it
   * renders any size through packages/job's TiledSession, which keeps the
   * images, their gradient and the optimiser state on the host and runs the
   * network tile by tile here. Requires loadWeights first.
   */
  createTileSession?(options: TileSessionOptions): Promise<TileSession>;
  /**
   * With createTileSession: the bytes a tile session holds whatever its tiles
   * (`fixed`: the weights and their reordered copies, reserves; Infinity for
   * a tile the backend cannot take at any memory) and one net per tile shape
   * (`nets[i]` for `shapes[i]`, each a shape of an extended region), in the
   * memory the backend computes in. Allocates nothing.
   */
  estimateTileMemory?(
    options: TileSessionOptions,
    shapes: ReadonlyArray<{ readonly height: number; readonly width: number }>,
  ): { fixed: number; nets: number[] };
  /** Frees the weights and everything else. */
  dispose(): void;
}

export interface SessionOptions {
  readonly height: number;
  readonly width: number;
  /** Number of images optimised together (each with its own content and style targets). */
  readonly batch: number;
  readonly pooling: Pooling;
  readonly loss: LossSpec;
}

/** An image in network input space: height x width x 3, float32, row-major (HWC). */
export interface ImageTensor {
  readonly height: number;
  readonly width: number;
  readonly data: Float32Array;
}

/**
 * Video: the temporal term's target of one batch item, at the session's size
 * (loss.ts, J_temporal): the previous stylised frame warped by the optical
 * flow, and each pixel's weight in 0..1 (0 at occlusions and motion
 * boundaries).
 */
export interface TemporalTarget {
  readonly image: ImageTensor;
  /** height x width, one weight per pixel. */
  readonly weights: Float32Array;
}

/** The targets of one batch item. */
export interface Targets {
  /** Same size as the session. Its activations at the content layers are the content target. */
  readonly content: ImageTensor;
  /**
   * One or more style images (any size) with blend weights summing to 1: the
   * style target of each layer is sum_k weight_k * Ghat(style_k), Ghat the
   * Gram matrix divided by its own n_H * n_W.
   */
  readonly styles: ReadonlyArray<StyleTarget>;
  /**
   * Spatial control (masks.ts): the content loss's weight per pixel, height x
   * width in [0, 1]; absent, 1 everywhere:
   * J_content = sum_p c_p sum_ch (a - a_C)^2 / (4 N nC), c the mask pooled to the layer.
   */
  readonly contentMask?: Float32Array;
  /** Video: read only when the loss has a temporalWeight; absent, the item has no temporal term (a first frame). */
  readonly temporal?: TemporalTarget;
}

/**
 * One style image of a batch item. With masks (masks.ts): the styles that
 * share a mask form a region whose target is their blend (weights
 * renormalised within it) and whose loss at each layer uses the guided Gram
 * of the output under the mask; styleRegions() groups them. A white or
 * absent mask is no mask.
 */
export interface StyleTarget {
  readonly image: ImageTensor;
  readonly weight: number;
  /** Where this style applies in the output: height x width of the session, in [0, 1]. */
  readonly mask?: Float32Array;
  /** The part of the painting to use: the style image's height x width, in [0, 1]. */
  readonly region?: Float32Array;
}

export interface IterateOptions {
  /** Adam hyper-parameters (beta1, beta2, eps; lr is already in stepSizes). */
  readonly adam: AdamConfig;
  /** lr_t for each of the updates to run, from adamStepSizes(): its length is the number of updates. */
  readonly stepSizes: Float32Array;
  /** Called from time to time with the number of updates done so far in this call. */
  readonly onProgress?: (done: number) => void;
}

export interface Session {
  readonly options: SessionOptions;
  /** Computes content activations and style Gram targets once, on the device. */
  setTargets(targets: readonly Targets[]): Promise<void>;
  /** Sets the images being optimised (batch x H x W x 3, NHWC) and zeroes the Adam moments. */
  setImages(images: Float32Array): Promise<void>;
  /**
   * Evaluates the loss of the current images, then runs stepSizes.length Adam
   * updates (each: loss and gradient, then the update). Returns, per batch
   * item, the loss of the images as they were when the call began: with no
   * step sizes it only evaluates.
   */
  iterate(options: IterateOptions): Promise<LossValues[]>;
  /** Loss and gradient d J / d image of the current images (tests, finite differences). */
  lossAndGradient(): Promise<{ losses: LossValues[]; gradient: Float32Array }>;
  /** The current images, batch x H x W x 3 (NHWC). */
  readImages(): Promise<Float32Array>;
  /** The Adam moments (m, v), batch x H x W x 3 each: for resuming a job. */
  readOptimizerState(): Promise<{ m: Float32Array; v: Float32Array }>;
  /** Restores moments saved by readOptimizerState. */
  writeOptimizerState(state: { m: Float32Array; v: Float32Array }): Promise<void>;
  /**
   * Optional: L-BFGS on the device, starting from the current images, so
   * that no evaluation returns to the host (the pairs s, y, the two-loop
   * recursion and the line search stay on the device). It must implement
   * core's Lbfgs (packages/core/src/lbfgs.ts: same two-loop recursion,
   * strong-Wolfe search, constants and bounds) and be tested against it. A backend
   * without it gets core's hostLbfgs (startLbfgs picks).
   */
  startLbfgs?(config: LbfgsConfig): Promise<LbfgsRun>;
  /**
   * Optional: host vector arithmetic faster than JavaScript's, with the same
   * results (VectorOps in lbfgs.ts), for core's L-BFGS on the host.
   */
  readonly vectorOps?: VectorOps;
  dispose(): void;
}

/** A tile session's shape: the largest tile, the network, the loss, and the memory it may keep tiles in. */
export interface TileSessionOptions {
  /** The largest extended region (core and halo) the session takes. */
  readonly tileHeight: number;
  readonly tileWidth: number;
  readonly pooling: Pooling;
  readonly loss: LossSpec;
  /**
   * Bytes of the nets that keep a tile's activations from pass 1 for pass 2
   * (one net per tile shape at least, whatever this says; more of a shape
   * when they fit, each saving a forward of the tile it keeps).
   */
  readonly netBudget: number;
}

/** A tile of an image of imageHeight x imageWidth (tiling.ts's Tile, with the image's size). */
export interface TileGeometry {
  readonly imageHeight: number;
  readonly imageWidth: number;
  readonly core: Rect;
  readonly extended: Rect;
}

/**
 * What a tile's content loss compares with: the content image's activations
 * at the tile's core, one array per content layer (core rows x core columns
 * x C, as contentActivations gives them), or the content image's pixels of
 * the extended region, which the session forwards first.
 */
export type TileContent = { readonly targets: readonly Float32Array[] } | { readonly pixels: Float32Array };

/**
 * The network run tile by tile (Backend.createTileSession). Pixels are the
 * extended region's, H x W x 3, network space; Grams and coefficients are one
 * C x C array per style layer of the loss; tiles must be exact (tiling.ts:
 * origins on the deepest loss layer's stride, the halo of its receptive
 * margin). The caller must not touch an array until the call that got it settles.
 */
export interface TileSession {
  /** Forward only: each style layer's Gram sum over the core (A^T A, not divided by N) into grams[l]. For style images. */
  gramSums(tile: TileGeometry, pixels: Float32Array, grams: readonly Float32Array[]): Promise<void>;
  /** Forward only: the core's activations at each content layer into out[k]. The content targets. */
  contentActivations(tile: TileGeometry, pixels: Float32Array, out: readonly Float32Array[]): Promise<void>;
  /**
   * Pass 1: the core's Gram sums into grams[l], and its share of the content
   * loss (sum_c w_c J_content^[c] over the core, normalised by the whole
   * image's layer sizes). The activations stay with `tag` (> 0) for backward
   * while the session's budget allows.
   */
  forward(tile: TileGeometry, pixels: Float32Array, content: TileContent, tag: number, grams: readonly Float32Array[]): Promise<number>;
  /**
   * Pass 2: d J / d A = A coefficients[l] on the core of style layer l
   * (coefficients: beta w_l (Ghat - T) / (C^2 N), the whole image's), plus the
   * content term, on the core only, backpropagated to the extended region's
   * pixels into `gradient` (H x W x 3).
   */
  backward(
    tile: TileGeometry,
    pixels: Float32Array,
    content: TileContent,
    tag: number,
    coefficients: readonly Float32Array[],
    gradient: Float32Array,
  ): Promise<void>;
  /** What the session did: nets built, forwards, pass-2 tiles whose activations were still held, bytes of nets. */
  stats(): TileStats;
  /**
   * Optional: Adam's update of host arrays as the backend's own kernels do it
   * (else core's adamUpdate), for the images a tiled session holds.
   */
  adamUpdate?(x: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, lrT: number, adam: AdamConfig): void;
  /** Optional: host vector arithmetic for core's L-BFGS (Session.vectorOps). */
  readonly vectorOps?: VectorOps;
  dispose(): void;
}

export interface TileStats {
  readonly netsBuilt: number;
  readonly forwards: number;
  readonly forwardsReused: number;
  readonly netBytes: number;
  readonly peakNetBytes: number;
}
