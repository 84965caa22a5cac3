/**
 * core's Backend/Session seam on the native engines: a thin adapter, since
 * the addon already speaks the seam's language (NHWC float32, per-step lr_t).
 */
import {
  UserError,
  checkLayersAvailable,
  countMemory,
  findLayer,
  validateWeightSet,
  type Backend,
  type IterateOptions,
  type LossSpec,
  type LossValues,
  type MemoryProfile,
  type MemoryShape,
  type Session,
  type SessionOptions,
  type Targets,
  type VectorOps,
  type WeightSet,
  type WeightedLayer,
} from '@nst/core';
import { loadNativeAddon, type NativeEngine, type NativeSession, type NativePrecision, type NativeWeightedLayer } from './addon.js';

export interface NativeBackendOptions {
  readonly precision?: NativePrecision;
  readonly gpu?: number;
}

/**
 * The native cpu or cuda backend. Throws UserError (one line) when the addon
 * is missing or the device unavailable, so `--backend auto` can fall back.
 */
export async function createNativeBackend(device: 'cpu' | 'cuda', options: NativeBackendOptions = {}): Promise<Backend> {
  const loaded = loadNativeAddon();
  if (!loaded.ok) throw new UserError(loaded.reason, { code: 'unsupported', field: 'backend' });
  let engine: NativeEngine;
  try {
    engine = loaded.addon.createEngine(device, device === 'cuda' ? options : {});
  } catch (e) {
    throw new UserError((e as Error).message, { code: 'unsupported', field: 'backend', cause: e });
  }
  const { vectorDot, vectorAxpy } = loaded.addon;
  return new NativeBackend(device, engine, { dot: vectorDot, axpy: vectorAxpy });
}

/**
 * The cpu engine's buffers (native/src/cpu/vgg_net.h): the weights as given
 * plus the copies reordered for the primitives; every layer's post-ReLU output
 * (and pooled map) kept for the backward pass; two ping-pong gradient buffers
 * of the largest map, and two more for the layout conversions around Winograd
 * layers; the content targets come from a second net of the session's size,
 * forward only (one more set of activations); the image, m, v and the
 * gradient. The style targets come from a forward-only net per style size.
 * A third copy of the activations covers oneDNN's scratchpads and the host
 * copies around the engine: a 384x288 render with the default loss grew the
 * process by 575 MiB; this estimates 780 MiB.
 */
const CPU_MEMORY: MemoryProfile = { weightCopies: 2, imageCopies: 5, activationCopies: 3, largestMapCopies: 4, styleForwardCopies: 1 };

class NativeBackend implements Backend {
  readonly detail: string;
  private layerNames: string[] = [];
  private source = '';

  constructor(
    readonly name: string,
    private readonly engine: NativeEngine,
    /** The addon's vector arithmetic (native/src/vector_ops.cc), for core's L-BFGS on the host. */
    private readonly vectorOps: VectorOps,
  ) {
    this.detail = engine.describe();
  }

  async loadWeights(weights: WeightSet): Promise<void> {
    validateWeightSet(weights);
    this.engine.setWeights(weights.layers);
    this.layerNames = weights.layers.map((l) => l.name);
    this.source = weights.source;
  }

  /**
   * cpu: counted here from the VGG table with the engine's buffers (below).
   * cuda: undefined, since the engine's own planner (native/src/cuda/plan.cc)
   * checks free device memory before it allocates a session and refuses one
   * that does not fit with the largest size that would.
   */
  estimateMemory(shape: MemoryShape): number {
    // cuda: 0 until the addon answers from the engine's plan; the engine still refuses a session that does not fit.
    return this.name === 'cpu' ? 4 * countMemory(shape, CPU_MEMORY).total : 0;
  }

  async createSession(options: SessionOptions): Promise<Session> {
    if (this.layerNames.length === 0) throw new Error(`${this.name}: createSession before loadWeights`);
    checkLayersAvailable(options.loss, this.layerNames, this.source);
    const raw = asUserError(() =>
      this.engine.createSession({
        height: options.height,
        width: options.width,
        batch: options.batch,
        pooling: options.pooling,
        loss: nativeLoss(options.loss),
      }),
    );
    return new NativeSessionAdapter(options, raw, this.vectorOps);
  }

  dispose(): void {
    this.engine.dispose();
  }
}

/**
 * The CUDA engine refuses, before allocating, a session or a style image that
 * does not fit in free device memory ("... needs about X but Y is free on
 * DEVICE; the largest that fits ..."): that is the user's size, not a bug.
 */
export function tooLargeAsUserError(e: unknown): unknown {
  const message = e instanceof Error ? e.message : String(e);
  if (!/needs about .* is free on /.test(message)) return e;
  return new UserError(message.split('\n')[0], { code: 'too-large', field: /style image/.test(message) ? 'styleScale' : 'size', cause: e });
}

function asUserError<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw tooLargeAsUserError(e);
  }
}

function nativeLayers(layers: readonly WeightedLayer[]): NativeWeightedLayer[] {
  return layers.map((l) => {
    const info = findLayer(l.layer);
    if (!info) throw new UserError(`unknown VGG-19 layer '${l.layer}'`);
    return { convIndex: info.index, weight: l.weight };
  });
}

function nativeLoss(spec: LossSpec) {
  return {
    content: nativeLayers(spec.contentLayers),
    style: nativeLayers(spec.styleLayers),
    alpha: spec.alpha,
    beta: spec.beta,
    tvWeight: spec.tvWeight,
  };
}

class NativeSessionAdapter implements Session {
  constructor(
    readonly options: SessionOptions,
    private readonly raw: NativeSession,
    readonly vectorOps: VectorOps,
  ) {}

  // async everywhere: argument errors the addon throws synchronously become rejections.
  async setTargets(targets: readonly Targets[]): Promise<void> {
    try {
      return await this.raw.setTargets(targets);
    } catch (e) {
      throw tooLargeAsUserError(e);
    }
  }

  async setImages(images: Float32Array): Promise<void> {
    this.raw.setImages(images);
  }

  async iterate(options: IterateOptions): Promise<LossValues[]> {
    const { beta1, beta2, eps } = options.adam;
    return this.raw.iterate({ beta1, beta2, eps }, options.stepSizes, options.onProgress);
  }

  async lossAndGradient(): Promise<{ losses: LossValues[]; gradient: Float32Array }> {
    return this.raw.lossAndGradient();
  }

  async readImages(): Promise<Float32Array> {
    return this.raw.readImages();
  }

  async readOptimizerState(): Promise<{ m: Float32Array; v: Float32Array }> {
    return this.raw.readOptimizerState();
  }

  async writeOptimizerState(state: { m: Float32Array; v: Float32Array }): Promise<void> {
    this.raw.writeOptimizerState(state.m, state.v);
  }

  dispose(): void {
    this.raw.dispose();
  }
}
