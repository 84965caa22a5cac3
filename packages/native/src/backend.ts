/**
 * core's Backend/Session seam on the native engines: a thin adapter, since
 * the addon already speaks the seam's language (NHWC float32, per-step lr_t).
 */
import {
  UserError,
  checkLayersAvailable,
  findLayer,
  validateWeightSet,
  type Backend,
  type IterateOptions,
  type LossSpec,
  type LossValues,
  type Session,
  type SessionOptions,
  type Targets,
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
  return new NativeBackend(device, engine);
}

class NativeBackend implements Backend {
  readonly detail: string;
  private layerNames: string[] = [];
  private source = '';

  constructor(
    readonly name: string,
    private readonly engine: NativeEngine,
  ) {
    this.detail = engine.describe();
  }

  async loadWeights(weights: WeightSet): Promise<void> {
    validateWeightSet(weights);
    this.engine.setWeights(weights.layers);
    this.layerNames = weights.layers.map((l) => l.name);
    this.source = weights.source;
  }

  async createSession(options: SessionOptions): Promise<Session> {
    if (this.layerNames.length === 0) throw new Error(`${this.name}: createSession before loadWeights`);
    checkLayersAvailable(options.loss, this.layerNames, this.source);
    const raw = this.engine.createSession({
      height: options.height,
      width: options.width,
      batch: options.batch,
      pooling: options.pooling,
      loss: nativeLoss(options.loss),
    });
    return new NativeSessionAdapter(options, raw);
  }

  dispose(): void {
    this.engine.dispose();
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
  ) {}

  // async everywhere: argument errors the addon throws synchronously become rejections.
  async setTargets(targets: readonly Targets[]): Promise<void> {
    return this.raw.setTargets(targets);
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
