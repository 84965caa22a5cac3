import type { AdamConfig } from './adam.js';
import type { LbfgsConfig, VectorOps } from './lbfgs.js';
import type { LbfgsRun } from './lbfgs-session.js';
import type { LossSpec, LossValues } from './loss.js';
import type { MemoryShape } from './memory.js';
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
  readonly styles: ReadonlyArray<{ readonly image: ImageTensor; readonly weight: number }>;
  /** Video: read only when the loss has a temporalWeight; absent, the item has no temporal term (a first frame). */
  readonly temporal?: TemporalTarget;
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
