/**
 * The native addon's exact JavaScript surface (native/src/addon.cc) and the
 * loader that finds it. Nothing here computes: see backend.ts for the
 * Backend/Session seam built on top.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export type NativeDevice = 'cpu' | 'cuda';
/** The precisions the job model names; an engine implements some of them (NativeAddon.precisions). */
export type NativePrecision = 'fp32' | 'tf32' | 'bf16';

export interface NativeEngineOptions {
  /** CUDA device ordinal (cuda only). */
  readonly gpu?: number;
  /**
   * Arithmetic of the convolutions, one the engine implements
   * (NativeAddon.precisions), or 'auto': the engine's choice (cuda: tf32;
   * cpu: fp32, bf16 only when asked for: native/src/engine.h says why).
   * Absent: cuda tf32, cpu fp32. Another precision, or cpu bf16 without
   * native bf16 (AMX-BF16 or AVX512-BF16; NST_CPU_FEATURES=none|avx512_bf16|amx
   * forces what the cpu engine believes the processor has), is refused with
   * code 'unsupported', field 'precision' (one line naming the missing
   * instructions).
   */
  readonly precision?: NativePrecision | 'auto';
}

export interface NativeConvLayer {
  readonly inChannels: number;
  readonly outChannels: number;
  /** 3 x 3 x in x out (HWIO) */
  readonly kernel: Float32Array;
  readonly bias: Float32Array;
}

export interface NativeWeightedLayer {
  /** 0 = conv1_1 .. 15 = conv5_4; must be below the number of layers given to setWeights. */
  readonly convIndex: number;
  readonly weight: number;
}

export interface NativeSessionConfig {
  readonly height: number;
  readonly width: number;
  readonly batch: number;
  readonly pooling: 'avg' | 'max';
  readonly loss: {
    readonly content: readonly NativeWeightedLayer[];
    readonly style: readonly NativeWeightedLayer[];
    readonly alpha?: number;
    readonly beta?: number;
    readonly tvWeight?: number;
    /** Video: the temporal term's weight (absent or 0: none). */
    readonly temporalWeight?: number;
  };
}

/** What estimateMemory plans for: a session's configuration and the sizes of its style images. */
export interface NativeMemoryShape extends NativeSessionConfig {
  readonly styleSizes: ReadonlyArray<{ readonly height: number; readonly width: number }>;
  /** Spatial control: the most style regions of a batch item when style masks or regions are used (absent or 0: none). */
  readonly regions?: number;
  /** Spatial control: whether an item has a content mask. */
  readonly contentMask?: boolean;
}

/** UserErrorCode's names (packages/core/src/errors.ts), and 'internal': a bug, or a failure of the platform. */
export type NativeErrorCode = 'not-found' | 'unsupported' | 'too-large' | 'internal';

/**
 * What the engines throw (native/src/napi_errors.h): a JS Error with the
 * failure as data, decided on by these properties, never by the message.
 * (The addon's own argument checks throw plain TypeErrors and RangeErrors.)
 */
export interface NativeEngineError extends Error {
  readonly code: NativeErrorCode;
  /** The job field at fault, in camelCase ('size', 'styleScale', 'precision', 'gpu', 'backend'), when one is. */
  readonly field?: string;
  /** too-large: bytes needed (Infinity: beyond what the engine can describe at any memory) and available. */
  readonly needed?: number;
  readonly available?: number;
}

export function isNativeEngineError(e: unknown): e is NativeEngineError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string';
}

export interface NativeImage {
  readonly height: number;
  readonly width: number;
  /** height x width x 3, float32 */
  readonly data: Float32Array;
}

/**
 * Spatial control (packages/core/src/masks.ts): a mask at each layer of a
 * loss list (one Float32Array per entry, in order), pooled to the layer
 * (core's maskAtLayers): layer height x width values in 0..1 each, for the
 * image it belongs to; a wrong length or value is a RangeError.
 */
export type NativeLayerMasks = readonly Float32Array[];

export interface NativeStyle {
  readonly image: NativeImage;
  /** Within its region (the weights of a region's styles sum to 1). */
  readonly weight: number;
  /** The entry of styleMasks (the region) this style belongs to; absent: 0. */
  readonly maskIndex?: number;
  /** The part of the painting to use, at each style layer at the style image's layer sizes; absent: all of it. */
  readonly region?: NativeLayerMasks;
}

export interface NativeTargets {
  readonly content: NativeImage;
  readonly styles: readonly NativeStyle[];
  /** Video: the warped previous frame (the session's size) and a weight in 0..1 per pixel (height x width). */
  readonly temporal?: { readonly image: NativeImage; readonly weights: Float32Array };
  /**
   * Spatial control: one entry per style region, its mask at each style
   * layer at the session's layer sizes, or null for an unmasked region;
   * every region has a style. Absent: one unmasked region of all the styles.
   * cpu bf16 refuses masks ('unsupported', field 'styleMask', 'styleRegion' or 'contentMask': the job's fields).
   */
  readonly styleMasks?: ReadonlyArray<NativeLayerMasks | null>;
  /** Spatial control: the content loss's weight per position at each content layer; absent: 1. */
  readonly contentMask?: NativeLayerMasks;
}

export interface NativeLoss {
  readonly content: number;
  readonly style: number;
  readonly tv: number;
  /** J_temporal before its weight (0 without a temporal weight). */
  readonly temporal: number;
  readonly total: number;
}

/** OpenCV's DIS presets (native/src/flow/flow.h): more scales and refinement, more accuracy. */
export type FlowPreset = 'ultrafast' | 'fast' | 'medium';

/**
 * A session: one image size and loss. The three Promise-returning calls run
 * on a worker thread; while one runs, every other call on the same engine
 * (and its sessions) throws "busy", but for the engine's estimateMemory and
 * deviceMemoryAvailable.
 */
export interface NativeSession {
  setTargets(targets: readonly NativeTargets[]): Promise<void>;
  /** batch x H x W x 3; zeroes the Adam moments. */
  setImages(images: Float32Array): void;
  /** Loss of the images as they are, then stepSizes.length Adam updates. */
  iterate(
    adam: { readonly beta1: number; readonly beta2: number; readonly eps: number },
    stepSizes: Float32Array,
    onProgress?: (done: number) => void,
  ): Promise<NativeLoss[]>;
  lossAndGradient(): Promise<{ losses: NativeLoss[]; gradient: Float32Array }>;
  readImages(): Float32Array;
  readOptimizerState(): { m: Float32Array; v: Float32Array };
  writeOptimizerState(m: Float32Array, v: Float32Array): void;
  /** Idempotent; later calls throw. */
  dispose(): void;
}

/** A rectangle of pixels: rows y0..y1-1, columns x0..x1-1. */
export interface NativeRect {
  readonly y0: number;
  readonly y1: number;
  readonly x0: number;
  readonly x1: number;
}

/** A tile of an image of imageHeight x imageWidth: its core and its extended region (core and halo), in that image's pixels. */
export interface NativeTile {
  readonly imageHeight: number;
  readonly imageWidth: number;
  readonly core: NativeRect;
  readonly extended: NativeRect;
}

export interface NativeTileSessionConfig {
  /** The largest extended region the session takes. */
  readonly tileHeight: number;
  readonly tileWidth: number;
  readonly pooling: 'avg' | 'max';
  readonly loss: NativeSessionConfig['loss'];
  /** Bytes of the nets that keep tiles' activations between the passes (at least one net is always built). */
  readonly netBudget?: number;
}

/** The content a tile's loss compares with: the content's activations at the core per content layer, or the content's pixels of the extended region. */
export type NativeTileContent = { readonly targets: readonly Float32Array[] } | { readonly pixels: Float32Array };

export interface NativeTileStats {
  readonly netsBuilt: number;
  readonly forwards: number;
  readonly forwardsReused: number;
  readonly netBytes: number;
  readonly peakNetBytes: number;
}

/**
 * Exact tiling (native/src/engine.h's TileSession). Arrays are read and
 * written by a worker thread while the promise is pending: leave them alone
 * until it settles. Every tile is checked against the layer table (origins
 * on the deepest loss layer's stride, a halo of at least its receptive
 * margin, ends on the stride or at the border): a RangeError otherwise.
 */
export interface NativeTileSession {
  /** Forwards `pixels` (the extended region, H x W x 3); each style layer's Gram sum over the core (A^T A, C x C) into grams[l]. */
  gramSums(tile: NativeTile, pixels: Float32Array, grams: readonly Float32Array[]): Promise<void>;
  /** The core's activations at each content layer (core rows x columns x C) into out[k]. */
  contentActivations(tile: NativeTile, pixels: Float32Array, out: readonly Float32Array[]): Promise<void>;
  /** Pass 1: the core's Gram sums into grams, and its share of the content loss; the activations kept under `tag` (> 0) while the budget allows. */
  forward(tile: NativeTile, pixels: Float32Array, content: NativeTileContent, tag: number, grams: readonly Float32Array[]): Promise<number>;
  /** Pass 2: the core's loss gradient (style: A coefficients[l]; content: its term) backpropagated to the extended region's pixels, into gradient. */
  backward(
    tile: NativeTile,
    pixels: Float32Array,
    content: NativeTileContent,
    tag: number,
    coefficients: readonly Float32Array[],
    gradient: Float32Array,
  ): Promise<void>;
  stats(): NativeTileStats;
  /** Idempotent; later calls throw. */
  dispose(): void;
}

export interface NativeEngine {
  /** What runs: e.g. "cpu (oneDNN 2.6.3, 2 threads, AVX512-BF16 bf16)" (instruction set and precision), "cuda (...)" */
  describe(): string;
  /** A prefix of VGG-19 in network order (1 to 16 layers). */
  setWeights(layers: readonly NativeConvLayer[]): void;
  /** Throws a NativeEngineError 'too-large' (field 'size') when the session cannot fit. */
  createSession(config: NativeSessionConfig): NativeSession;
  /**
   * Peak bytes a session of this shape needs with its weights and targets,
   * in the memory the engine computes in (cuda: the GPU's; cpu: the
   * process's), from the engine's plan of its own buffers; Infinity for a
   * shape it cannot take at any memory. Allocates nothing; allowed while a
   * call runs.
   */
  estimateMemory(shape: NativeMemoryShape): number;
  /** Exact tiling: a tile session (NativeTileSession). cuda: 'too-large' when its largest net cannot fit the free memory. */
  createTileSession(config: NativeTileSessionConfig): NativeTileSession;
  /**
   * The bytes a tile session holds whatever its tiles (`fixed`: the weights,
   * their reordered copies, reserves) and one net per tile shape, in the
   * memory the engine computes in; `fixed` is Infinity for a tile the engine
   * cannot take. Allocates nothing; allowed while a call runs.
   */
  estimateTileMemory(
    config: NativeTileSessionConfig,
    shapes: ReadonlyArray<{ readonly height: number; readonly width: number }>,
  ): { fixed: number; nets: number[] };
  /** cuda: the GPU's free bytes; cpu: undefined (it computes in host memory). Allowed while a call runs. */
  deviceMemoryAvailable(): number | undefined;
  /** Idempotent; disables the engine's sessions too. */
  dispose(): void;
}

export interface NativeAddon {
  /** Whether this build contains the CUDA engine. */
  readonly cudaCompiled: boolean;
  /**
   * Throws a NativeEngineError when the device is unavailable, with the
   * reason (no CUDA in this build, no GPU, ...: code 'unsupported', field
   * 'backend'; a GPU index that is not there: 'not-found', 'gpu'; a precision
   * the engine does not implement: 'unsupported', 'precision').
   */
  createEngine(device: NativeDevice, options?: NativeEngineOptions): NativeEngine;
  /** The precisions the engine implements (cpu: fp32, bf16; cuda: fp32, tf32), whether or not this build or machine can run it. */
  precisions(device: NativeDevice): NativePrecision[];
  /** sum a[i] b[i] in float64 (native/src/vector_ops.h; core's L-BFGS). Throws when the lengths differ. */
  vectorDot(a: Float32Array, b: Float32Array): number;
  /** y += alpha x in place, each element in float64, stored as float32. Throws when the lengths differ. */
  vectorAxpy(alpha: number, x: Float32Array, y: Float32Array): void;
  /**
   * Adam's update in place, as the engines' kernels compute it (float32,
   * native/src/kernels/adam.cuh): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
   * x -= lr m / (sqrt(v) + eps). Throws when the lengths differ.
   */
  adamUpdate(
    x: Float32Array,
    m: Float32Array,
    v: Float32Array,
    g: Float32Array,
    lr: number,
    adam: { readonly beta1: number; readonly beta2: number; readonly eps: number },
  ): void;
  /** Whether this build has the optical flow of nst video (OpenCV found when it was built): its version, or why not and the fix. */
  flowInfo(): { available: boolean; detail: string };
  /**
   * The dense optical flow (OpenCV's DIS) from grey frame `from` to grey
   * frame `to` (width x height bytes each): height x width x 2 values (dx, dy)
   * with from(x, y) matching to(x + dx, y + dy). A NativeEngineError
   * ('unsupported', field 'backend') in a build without OpenCV.
   */
  opticalFlow(frames: {
    readonly from: Uint8Array;
    readonly to: Uint8Array;
    readonly width: number;
    readonly height: number;
    readonly preset: FlowPreset;
  }): Float32Array;
}

export type AddonLoadResult = { ok: true; addon: NativeAddon; path: string } | { ok: false; reason: string };

/** Whether NST_CUDA_EMULATION=1 asks for the CUDA engine on the CPU stand-in (native/emulation). */
export function cudaEmulationRequested(): boolean {
  return process.env.NST_CUDA_EMULATION === '1';
}

/** The addon built by `npm run build:native:emulated -w @nst/native`, its stand-in libraries beside it. */
export function emulatedAddonPath(): string {
  return fileURLToPath(new URL('../../../native/build-emulated/Release/nst_native.node', import.meta.url));
}

/**
 * Where the build puts the addon; NST_NATIVE_ADDON overrides it (the ASan
 * build lives elsewhere), and NST_CUDA_EMULATION=1 picks the emulated build.
 */
export function nativeAddonPath(): string {
  const override = process.env.NST_NATIVE_ADDON;
  if (override) return override;
  if (cudaEmulationRequested()) return emulatedAddonPath();
  // src/ and dist/ are both two levels below the repository root's native/.
  return fileURLToPath(new URL('../../../native/build/Release/nst_native.node', import.meta.url));
}

let cached: AddonLoadResult | undefined;

/**
 * Loads the addon once per process (every later call, from `nst backends`,
 * `--backend auto` or a backend, gets the same result, failure included);
 * when it cannot, says why in one line.
 */
export function loadNativeAddon(): AddonLoadResult {
  if (!cached) {
    const addonPath = nativeAddonPath();
    if (cudaEmulationRequested()) useStandInLibraries(addonPath);
    cached = loadAddonFrom(addonPath);
  }
  return cached;
}

/**
 * The precisions the engine of `device` implements, for the options a
 * front end offers; none when the addon does not load (neither engine runs).
 */
export function nativePrecisions(device: NativeDevice): readonly NativePrecision[] {
  const loaded = loadNativeAddon();
  return loaded.ok ? loaded.addon.precisions(device) : [];
}

/**
 * The emulated engine must load the cuDNN and cuBLAS stand-ins beside it
 * (the real libraries would run on the stand-in runtime): it finds them
 * through the same variables a user sets for the real ones, overridden here.
 */
function useStandInLibraries(addonPath: string): void {
  const dir = path.dirname(addonPath);
  process.env.NST_CUDNN_PATH = path.join(dir, 'libcudnn_standin.so');
  process.env.NST_CUBLAS_PATH = path.join(dir, 'libcublas_standin.so');
}

/** Loads the addon at `path` (uncached). */
export function loadAddonFrom(path: string): AddonLoadResult {
  if (!existsSync(path)) {
    const failed = readBuildFailure(path);
    if (failed) return { ok: false, reason: `native addon not built: ${failed.reason}: ${failed.fix}` };
    return {
      ok: false,
      reason: `native addon not built (${path} is missing; run: npm run build:native${path === emulatedAddonPath() ? ':emulated' : ''} -w @nst/native)`,
    };
  }
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    return { ok: true, addon, path };
  } catch (e) {
    return { ok: false, reason: explainLoadError((e as Error).message ?? String(e), path) };
  }
}

/** What scripts/build-addon.mjs records when a build fails: the root cause and the command that fixes it. */
export interface BuildFailure {
  readonly reason: string;
  readonly missing: ReadonlyArray<{ readonly what: string; readonly apt: string }>;
  readonly fix: string;
}

/** The build's failure record beside an addon path (<out>/Release/x.node -> <out>/BUILD-FAILED.json), if any. */
export function readBuildFailure(addonPath: string): BuildFailure | undefined {
  const record = path.join(path.dirname(path.dirname(addonPath)), 'BUILD-FAILED.json');
  try {
    const r = JSON.parse(readFileSync(record, 'utf8')) as Partial<BuildFailure>;
    if (typeof r.reason !== 'string' || typeof r.fix !== 'string') return undefined;
    return { reason: r.reason, fix: r.fix, missing: Array.isArray(r.missing) ? r.missing : [] };
  } catch {
    return undefined;
  }
}

/** dlopen's and Node's messages, reduced to the cause a user can act on. */
export function explainLoadError(message: string, path: string): string {
  const firstLine = message.split('\n')[0];
  const missingLib = /([\w.+-]+\.so[.\d]*): cannot open shared object file/.exec(message);
  if (missingLib && /dnnl/.test(missingLib[1]))
    return `native addon cannot load: oneDNN library missing (${missingLib[1]}; install libdnnl2, e.g. apt-get install libdnnl-dev)`;
  if (missingLib) return `native addon cannot load: shared library ${missingLib[1]} missing`;
  if (/NODE_MODULE_VERSION|did not self-register|compiled against a different Node|napi_|invalid ELF|wrong ELF class/i.test(message))
    return `native addon built for another Node ABI or platform (${firstLine}); rebuild: npm run build:native -w @nst/native`;
  return `native addon at ${path} cannot load: ${firstLine}`;
}
