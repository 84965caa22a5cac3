import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import {
  checkLayersAvailable,
  DEFAULT_ADAM,
  DEFAULT_LOSS,
  DEFAULT_NOISE_RATIO,
  DEFAULT_SIZE,
  initialImage,
  MAX_SIDE,
  pixelUnit,
  resolveSize,
  toNetworkSpace,
  UserError,
  type AdamConfig,
  type ImageTensor,
  type InitSpec,
  type LossSpec,
  type Pooling,
  type SizeSpec,
  type Targets,
  type WeightSet,
} from '@nst/core';
import { removeStaleTemporaries } from '@nst/files';
import { inspectCheckpoint } from './checkpoint.js';
import { assertFileWritable, assertWritable, loadImage, probeImage } from './image-file.js';
import { refuseOverwritingInputs, type JobInput } from './inputs-outputs.js';
import type { RenderPlan } from './loop.js';

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
  hooks: { beforeLoading?: (shape: RenderShape) => void | Promise<void>; notice?: (line: string) => void } = {},
): Promise<RenderPlan> {
  validateNumbers(config);
  checkLayersAvailable(config.loss, weights.layers.map((l) => l.name), weights.source);
  const pre = weights.preprocessing;

  if (config.contents.length === 0) throw new UserError('no content image given', { field: 'content' });
  if (config.styles.length === 0) throw new UserError('no style image given', { field: 'style' });
  const outs = outputPaths(config);
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
      throw new UserError(`${config.styleScale} would resize the style images to ${longest} pixels on their longest side (at most ${MAX_SIDE})`, {
        code: 'too-large',
        field: 'styleScale',
      });
    styleSizes.push(resolveSize({ kind: 'longest', longest }, own.width, own.height));
  }
  await hooks.beforeLoading?.({ ...size, batch: config.contents.length, loss: config.loss, pooling: config.pooling, styleSizes });
  const contents: ImageTensor[] = [];
  for (const c of config.contents) contents.push(toNetworkSpace(await loadImage(c, 'content', size), pre));

  const blend = styleBlend(config);
  const styles: { image: ImageTensor; weight: number }[] = [];
  for (let k = 0; k < config.styles.length; k++) {
    const file = config.styles[k];
    styles.push({ image: toNetworkSpace(await loadImage(file, 'style', styleSizes[k]), pre), weight: blend[k] });
  }
  const targets: Targets[] = contents.map((content) => ({ content, styles }));

  const init = await initSpec(config, size, pre);
  const pixels = size.width * size.height * 3;
  const initialImages = new Float32Array(contents.length * pixels);
  contents.forEach((c, b) => initialImages.set(initialImage(init, c, pre, config.seed + b), b * pixels));

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
    printEvery: config.printEvery,
    saveEvery: config.saveEvery,
    checkpointPath,
    checkpointEvery: config.checkpointEvery,
    resume: config.resume,
    fingerprint: await fingerprint(config, weights, size),
  };
}

export function checkpointPathFor(config: RenderConfig): string {
  return config.contents.length === 1 ? `${config.out}.ckpt` : path.join(config.out, 'nst.ckpt');
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
    add(path.dirname(path.resolve(out)), (name) => name === path.basename(out) || (name.startsWith(`${stem}_`) && name.endsWith(ext) && /^\d+$/.test(name.slice(stem.length + 1, name.length - ext.length))));
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
