import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  checkLayersAvailable,
  DEFAULT_ADAM,
  DEFAULT_LBFGS,
  DEFAULT_LOSS,
  DEFAULT_NOISE_RATIO,
  DEFAULT_SIZE,
  initialImage,
  lbfgsMemoryBytes,
  luminanceImage,
  matchColourStatistics,
  pixelUnit,
  resolveSize,
  toNetworkSpace,
  UserError,
  type AdamConfig,
  type InitSpec,
  type LossSpec,
  type Pooling,
  type RgbImage,
  type RgbLevels,
  type SizeSpec,
  type Targets,
  type WeightSet,
} from '@nst/core';
import { assertWritable, loadAlpha, loadImage, probeColourProfile, probeImage, SIXTEEN_BIT_EXTENSIONS } from './image-file.js';
import type { RenderPlan } from './loop.js';
import type { OutputSettings } from './output.js';

/** A render job as the user describes it (the CLI's flags, parsed). */
export interface RenderConfig {
  /** One content image, or several rendered together as a batch (then `out` is a folder). */
  readonly contents: readonly string[];
  /** One or more style images, blended. */
  readonly styles: readonly string[];
  /** Blend weights of the styles (normalised to sum 1); equal when absent. */
  readonly styleBlendWeights?: readonly number[];
  /** Style images are resized to this factor of the output's longest side (keeping their aspect); absent: the output's exact size, as the notebook. */
  readonly styleScale?: number;
  readonly out: string;
  readonly size: SizeSpec;
  readonly iterations: number;
  readonly adam: AdamConfig;
  readonly loss: LossSpec;
  readonly pooling: Pooling;
  /** 'noise' | 'content' | 'random' | a file path */
  readonly init: string;
  readonly noiseRatio: number;
  readonly seed: number;
  readonly printEvery: number;
  readonly saveEvery: number;
  readonly checkpointEvery: number;
  readonly resume: boolean;
  /** 'adam' (default) or 'lbfgs'. */
  readonly optimizer?: 'adam' | 'lbfgs';
  /** L-BFGS: curvature pairs kept (default 100). */
  readonly lbfgsHistory?: number;
  /** Keep the content's colours: 'luminance' (style transferred on luminance only) or 'histogram' (style recoloured first). */
  readonly preserveColors?: 'none' | 'luminance' | 'histogram';
  /** Coarser passes before the final size (each longest side, or WxH), or 'auto'. */
  readonly scales?: readonly SizeSpec[] | 'auto';
  /** Iterations per scale, coarse to fine (one value: every scale); absent: `iterations` each. */
  readonly scaleIterations?: readonly number[];
  /** Output bits per channel (default 8). */
  readonly bitDepth?: 8 | 16;
  /** The output's colour profile: 'srgb' (default) or 'keep' (the content's). */
  readonly iccProfile?: 'srgb' | 'keep';
}

/** Seeds are 32-bit, as in random:SEED weights. */
export const MAX_SEED = 2 ** 32 - 1;

export const RENDER_DEFAULTS = {
  size: DEFAULT_SIZE,
  iterations: 200,
  adam: DEFAULT_ADAM,
  loss: DEFAULT_LOSS,
  pooling: 'avg' as Pooling,
  init: 'noise',
  noiseRatio: DEFAULT_NOISE_RATIO,
  seed: 0,
  printEvery: 20,
  saveEvery: 20,
  checkpointEvery: 0,
  resume: false,
};

/** Output file of each batch item. */
export function outputPaths(config: RenderConfig): string[] {
  if (config.contents.length === 1) return [config.out];
  const outs = config.contents.map((c) => path.join(config.out, `${path.basename(c, path.extname(c))}.png`));
  const clash = outs.find((o, i) => outs.indexOf(o) !== i);
  if (clash) throw new UserError(`two content images would both be written to '${clash}': rename one`, { code: 'conflict', field: 'content' });
  return outs;
}

/**
 * Loads and preprocesses everything a render needs and returns the plan for
 * runOptimisation. Every input error surfaces here, before any backend starts.
 */
export async function prepareRender(config: RenderConfig, weights: WeightSet): Promise<RenderPlan> {
  validateNumbers(config);
  checkLayersAvailable(config.loss, weights.layers.map((l) => l.name), weights.source);
  const pre = weights.preprocessing;

  if (config.contents.length === 0) throw new UserError('no content image given', { field: 'content' });
  if (config.styles.length === 0) throw new UserError('no style image given', { field: 'style' });
  const outs = outputPaths(config);
  if (config.contents.length > 1) await fs.mkdir(config.out, { recursive: true }).catch(() => undefined);
  for (const o of outs) await assertWritable(o, 'out');

  const first = await probeImage(config.contents[0], 'content');
  const size = resolveSize(config.size, first.width, first.height);
  const colours = config.preserveColors ?? 'none';
  const notes: string[] = [];
  const alpha = await contentAlphas(config, outs, size, notes);
  const contentPixels: RgbImage[] = [];
  // A content whose alpha is passed through keeps its straight colours; others are flattened on white.
  for (let b = 0; b < config.contents.length; b++) contentPixels.push(await loadImage(config.contents[b], 'content', size, { flatten: !alpha[b] }));
  // Luminance mode: the network sees luminance only; the content's chroma comes back at the output.
  const contents = contentPixels.map((p) => toNetworkSpace(colours === 'luminance' ? luminanceImage(p) : p, pre));

  const blend = styleBlend(config);
  const stylePixels: { image: RgbImage; weight: number }[] = [];
  for (let k = 0; k < config.styles.length; k++) {
    const file = config.styles[k];
    let styleSize = size;
    if (config.styleScale !== undefined) {
      const own = await probeImage(file, 'style');
      styleSize = resolveSize({ kind: 'longest', longest: Math.max(1, Math.round(config.styleScale * Math.max(size.width, size.height))) }, own.width, own.height);
    }
    stylePixels.push({ image: await loadImage(file, 'style', styleSize), weight: blend[k] });
  }
  // With colour preservation each style is adapted to the content it goes with.
  const stylesFor = (content: RgbImage) => stylePixels.map(({ image, weight }) => ({ image: toNetworkSpace(adaptStyle(image, content, colours), pre), weight }));
  const sharedStyles = colours === 'none' ? stylesFor(contentPixels[0]) : undefined;
  const targets: Targets[] = contents.map((content, b) => ({ content, styles: sharedStyles ?? stylesFor(contentPixels[b]) }));
  const output = await outputSettings(config, outs, contentPixels, alpha, notes);

  const init = await initSpec(config, size, pre);
  const pixels = size.width * size.height * 3;
  const initialImages = new Float32Array(contents.length * pixels);
  contents.forEach((c, b) => initialImages.set(initialImage(init, c, pre, config.seed + b), b * pixels));

  // L-BFGS's pairs live in host memory: refuse a history that cannot fit rather than swap or die mid-render.
  const hostBytes = optimizerHostBytes(config, contents.length * pixels);
  if (hostBytes > os.totalmem() / 2)
    throw new UserError(
      `L-BFGS would need ${(hostBytes / 2 ** 30).toFixed(1)} GiB for its history at ${size.width}x${size.height} (more than half of this machine's memory): use a smaller history`,
      { code: 'too-large', field: 'lbfgsHistory' },
    );

  // Adam's lr is in pixel levels (the notebook's space); scale it into the weight set's units.
  const unit = pixelUnit(pre);
  const lrScale = (unit[0] + unit[1] + unit[2]) / 3;
  return {
    session: { height: size.height, width: size.width, batch: contents.length, pooling: config.pooling, loss: config.loss },
    targets,
    initialImages,
    preprocessing: pre,
    outPaths: outs,
    iterations: config.iterations,
    adam: { ...config.adam, lr: config.adam.lr * lrScale },
    optimizer: config.optimizer ?? 'adam',
    lbfgs: { history: config.lbfgsHistory ?? DEFAULT_LBFGS.history },
    optimizerHostBytes: hostBytes,
    output,
    notes,
    printEvery: config.printEvery,
    saveEvery: config.saveEvery,
    checkpointPath: checkpointPathFor(config),
    checkpointEvery: config.checkpointEvery,
    resume: config.resume,
    fingerprint: fingerprint(config, weights, size),
  };
}

/**
 * Host memory the optimiser holds besides the backend's session: none for
 * Adam (its moments live in the session), the pairs and work vectors for
 * L-BFGS driven from the host. A job's needs are the backend's estimate for
 * the session plus this.
 */
export function optimizerHostBytes(config: Pick<RenderConfig, 'optimizer' | 'lbfgsHistory'>, unknowns: number): number {
  return config.optimizer === 'lbfgs' ? lbfgsMemoryBytes(config.lbfgsHistory ?? DEFAULT_LBFGS.history, unknowns) : 0;
}

export function checkpointPathFor(config: RenderConfig): string {
  return config.contents.length === 1 ? `${config.out}.ckpt` : path.join(config.out, 'nst.ckpt');
}

/** The style image as the network should see it under the colour mode. */
function adaptStyle(style: RgbImage, content: RgbImage, colours: 'none' | 'luminance' | 'histogram'): RgbLevels {
  if (colours === 'luminance') return luminanceImage(style, content);
  if (colours === 'histogram') {
    const matched = matchColourStatistics(style, content);
    for (let i = 0; i < matched.data.length; i++) matched.data[i] = Math.min(255, Math.max(0, matched.data[i]));
    return matched;
  }
  return style;
}

/** The alpha channel of each content at the output size, where its output can hold it. */
async function contentAlphas(config: RenderConfig, outs: readonly string[], size: { width: number; height: number }, notes: string[]) {
  return Promise.all(
    config.contents.map(async (c, b) => {
      const a = await loadAlpha(c, 'content', size);
      if (a && /^\.jpe?g$/i.test(path.extname(outs[b]))) {
        notes.push(`alpha: the alpha channel of '${c}' is not kept (${path.extname(outs[b])} has none)`);
        return undefined;
      }
      if (a) notes.push(`alpha: the alpha channel of '${c}' is passed through`);
      return a;
    }),
  );
}

/** Bit depth, chroma, alpha and colour profile of the outputs; what to tell the user goes to `notes`. */
async function outputSettings(
  config: RenderConfig,
  outs: readonly string[],
  contentPixels: readonly RgbImage[],
  alpha: readonly (Uint8Array | undefined)[],
  notes: string[],
): Promise<OutputSettings> {
  const bitDepth = config.bitDepth ?? 8;
  for (const o of outs)
    if (bitDepth === 16 && !(SIXTEEN_BIT_EXTENSIONS as readonly string[]).includes(path.extname(o).toLowerCase()))
      throw new UserError(`'${o}' cannot hold 16 bits per channel: use .png or .tif`, { code: 'unsupported', field: 'bitDepth' });
  const keep = config.iccProfile === 'keep';
  if (keep && bitDepth === 16) throw new UserError('keeping the content\'s colour profile needs 8 bits per channel', { code: 'unsupported', field: 'iccProfile' });
  const icc = await Promise.all(
    config.contents.map(async (c) => {
      const profile = await probeColourProfile(c, 'content');
      if (!profile) notes.push(`colour profile: '${c}' has none embedded: read as sRGB, written as sRGB`);
      else if (keep) notes.push(`colour profile: '${c}' is in '${profile.description}': kept (worked in sRGB, converted back and embedded)`);
      else notes.push(`colour profile: '${c}' is in '${profile.description}': converted to sRGB`);
      return keep ? profile?.icc : undefined;
    }),
  );
  if (config.preserveColors === 'luminance') notes.push("colours: style transferred on luminance only; the output keeps the content's chroma (YIQ)");
  if (config.preserveColors === 'histogram') notes.push("colours: the style recoloured to the content's mean and covariance (RGB) before optimisation");
  return { bitDepth, alpha, icc, chromaFrom: config.preserveColors === 'luminance' ? contentPixels : undefined };
}

function styleBlend(config: RenderConfig): number[] {
  const n = config.styles.length;
  const raw = config.styleBlendWeights ?? new Array(n).fill(1);
  if (raw.length !== n)
    throw new UserError(`${raw.length} weights given for ${n} style images`, { field: 'styleBlendWeights' });
  const sum = raw.reduce((a, b) => a + b, 0);
  if (!(sum > 0) || raw.some((w) => !(w >= 0))) throw new UserError('weights must be non-negative with a positive sum', { field: 'styleBlendWeights' });
  return raw.map((w) => w / sum);
}

async function initSpec(config: RenderConfig, size: { width: number; height: number }, pre: WeightSet['preprocessing']): Promise<InitSpec> {
  switch (config.init) {
    case 'noise':
      return { kind: 'noise', noiseRatio: config.noiseRatio };
    case 'content':
      return { kind: 'content' };
    case 'random':
      return { kind: 'random' };
    default:
      return { kind: 'image', image: toNetworkSpace(await loadImage(config.init, 'init', size), pre) };
  }
}

function validateNumbers(c: RenderConfig): void {
  const int = (v: number, field: string, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new UserError(`expected a whole number >= ${min}, got ${v}`, { field });
  };
  const pos = (v: number, field: string) => {
    if (!Number.isFinite(v) || v <= 0) throw new UserError(`expected a positive number, got ${v}`, { field });
  };
  const nonneg = (v: number, field: string) => {
    if (!Number.isFinite(v) || v < 0) throw new UserError(`expected a number >= 0, got ${v}`, { field });
  };
  int(c.iterations, 'iterations', 0);
  int(c.printEvery, 'printEvery', 1);
  int(c.saveEvery, 'saveEvery', 0);
  int(c.checkpointEvery, 'checkpointEvery', 0);
  if (!(Number.isInteger(c.seed) && c.seed >= 0 && c.seed <= MAX_SEED)) throw new UserError(`${c.seed} is not an integer in 0..${MAX_SEED}`, { field: 'seed' });
  pos(c.adam.lr, 'lr');
  nonneg(c.loss.alpha, 'alpha');
  nonneg(c.loss.beta, 'beta');
  nonneg(c.loss.tvWeight, 'tvWeight');
  if (!(c.noiseRatio >= 0 && c.noiseRatio <= 1)) throw new UserError(`${c.noiseRatio} is not in 0..1`, { field: 'noiseRatio' });
  if (c.styleScale !== undefined) pos(c.styleScale, 'styleScale');
  if (c.lbfgsHistory !== undefined) int(c.lbfgsHistory, 'lbfgsHistory', 1);
  if (c.pooling !== 'avg' && c.pooling !== 'max') throw new UserError(`'${c.pooling}' is not avg or max`, { field: 'pooling' });
}

/** A digest of everything that defines a job's result, for checkpoints. */
export function fingerprint(config: RenderConfig, weights: WeightSet, size: { width: number; height: number }): string {
  const job = {
    contents: config.contents.map((c) => path.resolve(c)),
    styles: config.styles.map((s) => path.resolve(s)),
    blend: config.styleBlendWeights ?? null,
    styleScale: config.styleScale ?? null,
    size,
    adam: config.adam,
    loss: config.loss,
    pooling: config.pooling,
    init: config.init,
    noiseRatio: config.noiseRatio,
    seed: config.seed,
    weights: weights.sha256 ?? weights.source,
    // Only when not the defaults, so that checkpoints of earlier versions still match.
    ...(config.optimizer === 'lbfgs' ? { optimizer: 'lbfgs', lbfgsHistory: config.lbfgsHistory ?? DEFAULT_LBFGS.history } : {}),
    ...(config.preserveColors && config.preserveColors !== 'none' ? { preserveColors: config.preserveColors } : {}),
  };
  return createHash('sha256').update(JSON.stringify(job)).digest('hex');
}
