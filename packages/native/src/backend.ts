/**
 * core's Backend/Session seam on the native engines: a thin adapter, since
 * the addon already speaks the seam's language (NHWC float32, per-step lr_t).
 */
import {
  UserError,
  checkLayersAvailable,
  effectiveMask,
  findLayer,
  maskAtLayers,
  styleRegions,
  memoryRefusal,
  validateWeightSet,
  type Backend,
  type IterateOptions,
  type LossSpec,
  type LossValues,
  type MemoryShape,
  type Session,
  type SessionOptions,
  type Targets,
  type TileContent,
  type TileGeometry,
  type TileSession,
  type TileSessionOptions,
  type TileStats,
  type AdamConfig,
  type VectorOps,
  type WeightSet,
  type WeightedLayer,
} from '@nst/core';
import {
  isNativeEngineError,
  loadNativeAddon,
  type NativeAddon,
  type NativeEngine,
  type NativeTileSession,
  type NativeLoss,
  type NativePrecision,
  type NativeSession,
  type NativeTargets,
  type NativeWeightedLayer,
} from './addon.js';

export interface NativeBackendOptions {
  /** One the engine implements, or 'auto' (cuda: tf32; cpu: fp32, bf16 only when asked for). */
  readonly precision?: NativePrecision | 'auto';
  /** cuda only. */
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
    engine = loaded.addon.createEngine(device, device === 'cuda' ? options : { precision: options.precision });
  } catch (e) {
    // A precision or GPU the engine refuses names its field; anything else
    // (no GPU, no cuDNN, a failing driver call) makes the backend unavailable.
    const user = isNativeEngineError(e) && e.code !== 'internal' && e.field;
    throw new UserError((e as Error).message, {
      code: user ? e.code : 'unsupported',
      field: user ? e.field : 'backend',
      cause: e,
    });
  }
  const { vectorDot, vectorAxpy } = loaded.addon;
  // Masks: both engines but cpu bf16, which has no guided Grams (it refuses them).
  const masks = device === 'cuda' || options.precision !== 'bf16';
  return new NativeBackend(device, engine, { dot: vectorDot, axpy: vectorAxpy }, loaded.addon.adamUpdate, masks);
}

/**
 * An engine's error as the user's error, by its code: 'too-large' becomes
 * core's one refusal (the estimate, what is available, the largest size that
 * fits by `estimate`) on the field the engine names ('size' for a session,
 * 'styleScale' for a style image); another user code keeps its message and
 * field; 'internal' (a bug, a failing platform call) and anything that is not
 * an engine error stay as they are.
 */
export function userErrorOf(e: unknown, backendName: string, shape: MemoryShape, estimate: (s: MemoryShape) => number): unknown {
  if (!isNativeEngineError(e) || e.code === 'internal') return e;
  if (e.code === 'too-large' && e.needed !== undefined && e.available !== undefined) {
    const refusal = memoryRefusal(backendName, shape, e.needed, e.available, estimate);
    return new UserError(refusal.detail, { code: 'too-large', field: e.field ?? refusal.field, cause: e });
  }
  return new UserError(e.message, { code: e.code, field: e.field, cause: e });
}

class NativeBackend implements Backend {
  readonly detail: string;
  private layerNames: string[] = [];
  private source = '';

  /** cuda only: the GPU's free memory (a cpu engine computes in host memory, which the job layer measures). */
  readonly deviceMemoryAvailable?: () => number;

  constructor(
    readonly name: string,
    private readonly engine: NativeEngine,
    /** The addon's vector arithmetic (native/src/vector_ops.cc), for core's L-BFGS on the host. */
    private readonly vectorOps: VectorOps,
    /** The addon's Adam update of host arrays (the engines' float32 arithmetic), for tiled sessions. */
    private readonly adamUpdate: NativeAddon['adamUpdate'],
    readonly supportsMasks: boolean,
  ) {
    this.detail = engine.describe();
    if (name === 'cuda') this.deviceMemoryAvailable = () => engine.deviceMemoryAvailable() ?? 0;
  }

  async loadWeights(weights: WeightSet): Promise<void> {
    validateWeightSet(weights);
    this.engine.setWeights(weights.layers);
    this.layerNames = weights.layers.map((l) => l.name);
    this.source = weights.source;
  }

  /** The engine's own plan of its buffers (native/src/cpu/vgg_net.h's VggNetPlan, native/src/cuda/memory_plan.h). */
  estimateMemory(shape: MemoryShape): number {
    return this.engine.estimateMemory({
      height: shape.height,
      width: shape.width,
      batch: shape.batch,
      pooling: shape.pooling,
      loss: nativeLoss(shape.loss),
      styleSizes: shape.styleSizes,
      regions: shape.regions ?? 0,
      contentMask: shape.contentMask ?? false,
    });
  }

  async createSession(options: SessionOptions): Promise<Session> {
    if (this.layerNames.length === 0) throw new Error(`${this.name}: createSession before loadWeights`);
    checkLayersAvailable(options.loss, this.layerNames, this.source);
    const estimate = (s: MemoryShape) => this.estimateMemory(s);
    let raw: NativeSession;
    try {
      raw = this.engine.createSession({
        height: options.height,
        width: options.width,
        batch: options.batch,
        pooling: options.pooling,
        loss: nativeLoss(options.loss),
      });
    } catch (e) {
      throw userErrorOf(e, this.name, { ...options, styleSizes: [] }, estimate);
    }
    return new NativeSessionAdapter(options, raw, this.vectorOps, (e, styleSizes) =>
      userErrorOf(e, this.name, { ...options, styleSizes }, estimate),
    );
  }

  /** Exact tiling: the engine's tile session (native/src/engine.h's TileSession). */
  async createTileSession(options: TileSessionOptions): Promise<TileSession> {
    if (this.layerNames.length === 0) throw new Error(`${this.name}: createTileSession before loadWeights`);
    checkLayersAvailable(options.loss, this.layerNames, this.source);
    let raw: NativeTileSession;
    try {
      raw = this.engine.createTileSession(nativeTileConfig(options));
    } catch (e) {
      const shape = { height: options.tileHeight, width: options.tileWidth, batch: 1, pooling: options.pooling, loss: options.loss };
      throw userErrorOf(e, this.name, { ...shape, styleSizes: [] }, (s) => this.estimateMemory(s));
    }
    return new NativeTileSessionAdapter(raw, this.vectorOps, this.adamUpdate);
  }

  /** The engine's plan of a tile session's buffers (native/src/cpu/tile_session.cc, native/src/cuda/memory_plan.h). */
  estimateTileMemory(
    options: TileSessionOptions,
    shapes: ReadonlyArray<{ readonly height: number; readonly width: number }>,
  ): { fixed: number; nets: number[] } {
    return this.engine.estimateTileMemory(nativeTileConfig(options), shapes);
  }

  dispose(): void {
    this.engine.dispose();
  }
}

function nativeTileConfig(options: TileSessionOptions) {
  return {
    tileHeight: options.tileHeight,
    tileWidth: options.tileWidth,
    pooling: options.pooling,
    loss: nativeLoss(options.loss),
    netBudget: options.netBudget,
  };
}

class NativeTileSessionAdapter implements TileSession {
  constructor(
    private readonly raw: NativeTileSession,
    readonly vectorOps: VectorOps,
    private readonly adam: NativeAddon['adamUpdate'],
  ) {}

  // async everywhere: argument errors the addon throws synchronously become rejections.
  async gramSums(tile: TileGeometry, pixels: Float32Array, grams: readonly Float32Array[]): Promise<void> {
    return this.raw.gramSums(tile, pixels, grams);
  }

  async contentActivations(tile: TileGeometry, pixels: Float32Array, out: readonly Float32Array[]): Promise<void> {
    return this.raw.contentActivations(tile, pixels, out);
  }

  async forward(
    tile: TileGeometry,
    pixels: Float32Array,
    content: TileContent,
    tag: number,
    grams: readonly Float32Array[],
  ): Promise<number> {
    return this.raw.forward(tile, pixels, content, tag, grams);
  }

  async backward(
    tile: TileGeometry,
    pixels: Float32Array,
    content: TileContent,
    tag: number,
    coefficients: readonly Float32Array[],
    gradient: Float32Array,
  ): Promise<void> {
    return this.raw.backward(tile, pixels, content, tag, coefficients, gradient);
  }

  stats(): TileStats {
    return this.raw.stats();
  }

  adamUpdate(x: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, lrT: number, adam: AdamConfig): void {
    this.adam(x, m, v, g, lrT, adam);
  }

  dispose(): void {
    this.raw.dispose();
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
    temporalWeight: spec.temporalWeight ?? 0,
  };
}

/** The engine's losses as the seam has them: `temporal` only where the loss has a temporal weight. */
function lossesOf(raw: readonly NativeLoss[], spec: LossSpec): LossValues[] {
  return raw.map(({ temporal, ...rest }) => (spec.temporalWeight ? { ...rest, temporal } : rest));
}

class NativeSessionAdapter implements Session {
  constructor(
    readonly options: SessionOptions,
    private readonly raw: NativeSession,
    readonly vectorOps: VectorOps,
    /** An engine error of setTargets as the user's error, for these style image sizes. */
    private readonly userError: (e: unknown, styleSizes: MemoryShape['styleSizes']) => unknown,
  ) {}

  // async everywhere: argument errors the addon throws synchronously become rejections.
  async setTargets(targets: readonly Targets[]): Promise<void> {
    try {
      return await this.raw.setTargets(targets.map((t) => nativeTargets(t, this.options)));
    } catch (e) {
      throw this.userError(
        e,
        targets.flatMap((t) => t.styles.map((s) => ({ height: s.image.height, width: s.image.width }))),
      );
    }
  }

  async setImages(images: Float32Array): Promise<void> {
    this.raw.setImages(images);
  }

  async iterate(options: IterateOptions): Promise<LossValues[]> {
    const { beta1, beta2, eps } = options.adam;
    return lossesOf(await this.raw.iterate({ beta1, beta2, eps }, options.stepSizes, options.onProgress), this.options.loss);
  }

  async lossAndGradient(): Promise<{ losses: LossValues[]; gradient: Float32Array }> {
    const { losses, gradient } = await this.raw.lossAndGradient();
    return { losses: lossesOf(losses, this.options.loss), gradient };
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

/**
 * One item's targets as the addon takes them. Without masks (none, or all
 * white: effectiveMask) exactly the seam's targets, so that the engines take
 * the unmasked path; with masks, the styles grouped into core's regions
 * (styleRegions) and every mask pooled to each loss layer (maskAtLayers):
 * the engines never pool a mask themselves.
 */
export function nativeTargets(t: Targets, options: SessionOptions): NativeTargets {
  const styleLayers = options.loss.styleLayers.map((l) => findLayer(l.layer)!.index);
  const contentLayers = options.loss.contentLayers.map((l) => findLayer(l.layer)!.index);
  const atLayers = (mask: Float32Array, height: number, width: number, layers: readonly number[]) => {
    const pooled = maskAtLayers(mask, height, width, layers);
    return layers.map((i) => pooled.get(i)!);
  };
  const { height, width } = options;
  const contentMask = effectiveMask(t.contentMask);
  const withContentMask =
    contentMask && contentLayers.length > 0 ? { contentMask: atLayers(contentMask, height, width, contentLayers) } : {};
  const masked = t.styles.some((s) => effectiveMask(s.mask) || effectiveMask(s.region));
  if (!masked)
    return { content: t.content, styles: t.styles.map(({ image, weight }) => ({ image, weight })), ...withTemporal(t), ...withContentMask };
  const regions = styleRegions(t.styles);
  return {
    content: t.content,
    styles: regions.flatMap((r, maskIndex) =>
      r.styles.map((s) => ({
        image: s.image,
        weight: s.weight,
        maskIndex,
        ...(s.region ? { region: atLayers(s.region, s.image.height, s.image.width, styleLayers) } : {}),
      })),
    ),
    styleMasks: regions.map((r) => (r.mask ? atLayers(r.mask, height, width, styleLayers) : null)),
    ...withTemporal(t),
    ...withContentMask,
  };
}

const withTemporal = (t: Targets) => (t.temporal ? { temporal: t.temporal } : {});
