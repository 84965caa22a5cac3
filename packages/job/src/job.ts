import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
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
  MAX_SIDE,
  pixelBounds,
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
import { removeStaleTemporaries } from '@nst/files';
import { inspectCheckpoint } from './checkpoint.js';
import {
  assertFileWritable,
  assertWritable,
  loadAlpha,
  loadImage,
  probeColourProfile,
  probeImage,
  SIXTEEN_BIT_EXTENSIONS,
} from './image-file.js';
import { refuseOverwritingInputs, type JobInput } from './inputs-outputs.js';
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
  if (clash)
    throw new UserError(`two content images would both be written to '${clash}': rename one`, { code: 'conflict', field: 'content' });
  return outs;
}

/** The sizes a render will work at, known from the files' headers before any image is decoded. */
export interface RenderShape {
  readonly height: number;
  readonly width: number;
  readonly batch: number;
  readonly loss: LossSpec;
  readonly pooling: Pooling;
  /** The size each style image is resized to. */
  readonly styleSizes: readonly { readonly width: number; readonly height: number }[];
}

/** What prepareRender lets its caller do on the way. */
export interface PrepareHooks {
  /** Sees the sizes before any image is decoded (to refuse a job that cannot fit in memory before allocating it). */
  readonly beforeLoading?: (shape: RenderShape) => void | Promise<void>;
  /** Hears of leftovers cleaned up. */
  readonly notice?: (line: string) => void;
}

/**
 * Loads and preprocesses everything a render needs and returns the plan for
 * runOptimisation. Every input error surfaces here, before any backend starts.
 * `beforeLoading` sees the sizes before any image is decoded (to refuse a job
 * that cannot fit in memory before allocating it); `notice` hears of leftovers
 * cleaned up.
 */
export async function prepareRender(
  config: RenderConfig & { readonly weights?: string },
  weights: WeightSet,
  hooks: PrepareHooks = {},
): Promise<RenderPlan> {
  validateNumbers(config);
  checkLayersAvailable(
    config.loss,
    weights.layers.map((l) => l.name),
    weights.source,
  );
  const pre = weights.preprocessing;

  if (config.contents.length === 0) throw new UserError('no content image given', { field: 'content' });
  if (config.styles.length === 0) throw new UserError('no style image given', { field: 'style' });
  const outs = outputPaths(config);
  checkOutputFormats(config, outs);
  const checkpointPath = checkpointPathFor(config);
  await refuseOverwritingInputs(await jobInputs(config, weights), {
    finals: outs,
    checkpoint: checkpointPath,
    // Saves every saveEvery; a run that diverges keeps its last report's image (every printEvery).
    intermediate: { every: gcd(config.saveEvery, config.printEvery), iterations: config.iterations },
  });
  if (config.contents.length > 1) await fs.mkdir(config.out, { recursive: true }).catch(() => undefined);
  for (const o of outs) await assertWritable(o, 'out');
  await assertCheckpointUsable(checkpointPath);
  for (const line of await removeLeftovers(outs, checkpointPath)) hooks.notice?.(line);

  const first = await probeImage(config.contents[0], 'content');
  const size = resolveSize(config.size, first.width, first.height);
  const styleSizes: { width: number; height: number }[] = [];
  for (const file of config.styles) {
    if (config.styleScale === undefined) {
      styleSizes.push(size);
      continue;
    }
    const own = await probeImage(file, 'style');
    const longest = Math.max(1, Math.round(config.styleScale * Math.max(size.width, size.height)));
    if (longest > MAX_SIDE)
      throw new UserError(
        `${config.styleScale} would resize the style images to ${longest} pixels on their longest side (at most ${MAX_SIDE})`,
        {
          code: 'too-large',
          field: 'styleScale',
        },
      );
    styleSizes.push(resolveSize({ kind: 'longest', longest }, own.width, own.height));
  }
  await hooks.beforeLoading?.({ ...size, batch: config.contents.length, loss: config.loss, pooling: config.pooling, styleSizes });
  const colours = config.preserveColors ?? 'none';
  const notes: string[] = [];
  const alpha = await contentAlphas(config, outs, size, notes);
  const contentPixels: RgbImage[] = [];
  // A content whose alpha is passed through keeps its straight colours; others are flattened on white.
  for (let b = 0; b < config.contents.length; b++)
    contentPixels.push(await loadImage(config.contents[b], 'content', size, { flatten: !alpha[b] }));
  // Luminance mode: the network sees luminance only; the content's chroma comes back at the output.
  const contents = contentPixels.map((p) => toNetworkSpace(colours === 'luminance' ? luminanceImage(p) : p, pre));

  const blend = styleBlend(config);
  const stylePixels: { image: RgbImage; weight: number }[] = [];
  for (let k = 0; k < config.styles.length; k++) {
    const file = config.styles[k];
    stylePixels.push({ image: await loadImage(file, 'style', styleSizes[k]), weight: blend[k] });
  }
  // With colour preservation each style is adapted to the content it goes with.
  const stylesFor = (content: RgbImage) =>
    stylePixels.map(({ image, weight }) => ({ image: toNetworkSpace(adaptStyle(image, content, colours), pre), weight }));
  const sharedStyles = colours === 'none' ? stylesFor(contentPixels[0]) : undefined;
  const targets: Targets[] = contents.map((content, b) => ({ content, styles: sharedStyles ?? stylesFor(contentPixels[b]) }));
  const output = await outputSettings(config, contentPixels, alpha, notes);

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
    // Inside the pixel range: what leaves it is clipped when written, so the optimiser should not go there.
    lbfgs: { history: config.lbfgsHistory ?? DEFAULT_LBFGS.history, bounds: pixelBounds(pre) },
    optimizerHostBytes: hostBytes,
    output,
    notes,
    printEvery: config.printEvery,
    saveEvery: config.saveEvery,
    checkpointPath,
    checkpointEvery: config.checkpointEvery,
    resume: config.resume,
    fingerprint: await fingerprint(config, weights, size),
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
/** What the outputs' formats can hold: checked with the other options, before any file is read. */
function checkOutputFormats(config: RenderConfig, outs: readonly string[]): void {
  if (config.bitDepth !== 16) return;
  for (const o of outs)
    if (!(SIXTEEN_BIT_EXTENSIONS as readonly string[]).includes(path.extname(o).toLowerCase()))
      throw new UserError(`'${o}' cannot hold 16 bits per channel: use .png or .tif`, { code: 'unsupported', field: 'bitDepth' });
  if (config.iccProfile === 'keep')
    throw new UserError("keeping the content's colour profile needs 8 bits per channel", { code: 'unsupported', field: 'iccProfile' });
}

async function outputSettings(
  config: RenderConfig,
  contentPixels: readonly RgbImage[],
  alpha: readonly (Uint8Array | undefined)[],
  notes: string[],
): Promise<OutputSettings> {
  const bitDepth = config.bitDepth ?? 8;
  const keep = config.iccProfile === 'keep';
  const icc = await Promise.all(
    config.contents.map(async (c) => {
      const profile = await probeColourProfile(c, 'content');
      if (!profile) notes.push(`colour profile: '${c}' has none embedded: read as sRGB, written as sRGB`);
      else if (keep)
        notes.push(`colour profile: '${c}' is in '${profile.description}': kept (worked in sRGB, converted back and embedded)`);
      else notes.push(`colour profile: '${c}' is in '${profile.description}': converted to sRGB`);
      return keep ? profile?.icc : undefined;
    }),
  );
  if (config.preserveColors === 'luminance')
    notes.push("colours: style transferred on luminance only; the output keeps the content's chroma (YIQ)");
  if (config.preserveColors === 'histogram')
    notes.push("colours: the style recoloured to the content's mean and covariance (RGB) before optimisation");
  return { bitDepth, alpha, icc, chromaFrom: config.preserveColors === 'luminance' ? contentPixels : undefined };
}

function styleBlend(config: RenderConfig): number[] {
  const n = config.styles.length;
  const raw = config.styleBlendWeights ?? new Array(n).fill(1);
  if (raw.length !== n) throw new UserError(`${raw.length} weights given for ${n} style images`, { field: 'styleBlendWeights' });
  const sum = raw.reduce((a, b) => a + b, 0);
  if (!(sum > 0) || raw.some((w) => !(w >= 0)))
    throw new UserError('weights must be non-negative with a positive sum', { field: 'styleBlendWeights' });
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
  if (!(Number.isInteger(c.seed) && c.seed >= 0 && c.seed <= MAX_SEED))
    throw new UserError(`${c.seed} is not an integer in 0..${MAX_SEED}`, { field: 'seed' });
  pos(c.adam.lr, 'lr');
  nonneg(c.loss.alpha, 'alpha');
  nonneg(c.loss.beta, 'beta');
  nonneg(c.loss.tvWeight, 'tvWeight');
  if (!(c.noiseRatio >= 0 && c.noiseRatio <= 1)) throw new UserError(`${c.noiseRatio} is not in 0..1`, { field: 'noiseRatio' });
  if (c.styleScale !== undefined) pos(c.styleScale, 'styleScale');
  if (c.lbfgsHistory !== undefined) int(c.lbfgsHistory, 'lbfgsHistory', 1);
  if (c.pooling !== 'avg' && c.pooling !== 'max') throw new UserError(`'${c.pooling}' is not avg or max`, { field: 'pooling' });
}

/**
 * A digest of everything that defines a job's result, for checkpoints. The
 * input images count by content (SHA-256 of their bytes), not by path: a
 * content image replaced under the same name is another job, and the same
 * files moved elsewhere are the same job.
 */
export async function fingerprint(config: RenderConfig, weights: WeightSet, size: { width: number; height: number }): Promise<string> {
  const fixed = new Set(['noise', 'content', 'random']);
  const job = {
    contents: await Promise.all(config.contents.map((c) => fileDigest(c, 'content'))),
    styles: await Promise.all(config.styles.map((s) => fileDigest(s, 'style'))),
    blend: config.styleBlendWeights ?? null,
    styleScale: config.styleScale ?? null,
    size,
    adam: config.adam,
    loss: config.loss,
    pooling: config.pooling,
    init: fixed.has(config.init) ? config.init : await fileDigest(config.init, 'init'),
    noiseRatio: config.noiseRatio,
    seed: config.seed,
    weights: weights.sha256 ?? weights.source,
    // Only when not the defaults, so that checkpoints of earlier versions still match.
    ...(config.optimizer === 'lbfgs' ? { optimizer: 'lbfgs', lbfgsHistory: config.lbfgsHistory ?? DEFAULT_LBFGS.history } : {}),
    ...(config.preserveColors && config.preserveColors !== 'none' ? { preserveColors: config.preserveColors } : {}),
  };
  return createHash('sha256').update(JSON.stringify(job)).digest('hex');
}

/** SHA-256 of a file's bytes, streamed. */
async function fileDigest(file: string, field: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (e) {
    throw new UserError(`cannot read '${file}' (${(e as NodeJS.ErrnoException).code})`, { code: 'unreadable', field });
  }
  return hash.digest('hex');
}

/** The files a job reads: its images and, when they are files on disk, its weights (each file of a weight folder). */
async function jobInputs(config: RenderConfig & { readonly weights?: string }, weights: WeightSet): Promise<JobInput[]> {
  const inputs: JobInput[] = [
    ...config.contents.map((file) => ({ file, field: 'content', what: 'content image' })),
    ...config.styles.map((file) => ({ file, field: 'style', what: 'style image' })),
  ];
  if (!['noise', 'content', 'random'].includes(config.init)) inputs.push({ file: config.init, field: 'init', what: 'init image' });
  for (const source of new Set([config.weights, weights.source])) {
    if (!source || /^[a-z]+:/.test(source)) continue;
    const st = await fs.stat(source).catch(() => undefined);
    if (st?.isFile()) inputs.push({ file: source, field: 'weights', what: 'weights' });
    else if (st?.isDirectory())
      for (const name of (await fs.readdir(source).catch(() => [] as string[])).slice(0, 10_000))
        inputs.push({ file: path.join(source, name), field: 'weights', what: 'weights' });
  }
  return inputs;
}

/**
 * The checkpoint path must be free for nst to write: absent, or an nst
 * checkpoint (of this job or an earlier one of the same output). Anything
 * else there (a folder, the user's own file) is refused now rather than
 * overwritten on Ctrl-C.
 */
async function assertCheckpointUsable(file: string): Promise<void> {
  const what = await inspectCheckpoint(file);
  if (what.kind === 'other')
    throw new UserError(`cannot use '${file}' as this output's checkpoint: ${what.why}; move it away or choose another output`, {
      code: 'unwritable',
      field: 'out',
    });
  await assertFileWritable(file, (detail) => new UserError(detail, { code: 'unwritable', field: 'out' }));
}

/** Removes the temporary files a killed run of the same outputs left behind; one line per file removed. */
async function removeLeftovers(outs: readonly string[], checkpointPath: string): Promise<string[]> {
  const byFolder = new Map<string, ((name: string) => boolean)[]>();
  const add = (dir: string, accepts: (name: string) => boolean) => byFolder.set(dir, [...(byFolder.get(dir) ?? []), accepts]);
  for (const out of outs) {
    const ext = path.extname(out);
    const stem = path.basename(out, ext);
    add(
      path.dirname(path.resolve(out)),
      (name) =>
        name === path.basename(out) ||
        (name.startsWith(`${stem}_`) && name.endsWith(ext) && /^\d+$/.test(name.slice(stem.length + 1, name.length - ext.length))),
    );
  }
  add(path.dirname(path.resolve(checkpointPath)), (name) => name === path.basename(checkpointPath));
  const lines: string[] = [];
  for (const [dir, accepts] of byFolder)
    for (const file of await removeStaleTemporaries(dir, (name) => accepts.some((a) => a(name))))
      lines.push(`removed '${file}', left behind by an earlier run that was killed`);
  return lines;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
