import path from 'node:path';
import {
  initialImage,
  luminanceImage,
  matchColourStatistics,
  toNetworkSpace,
  UserError,
  type InitSpec,
  type Preprocessing,
  type RgbImage,
  type RgbLevels,
  type Targets,
} from '@nst/core';
import { loadAlpha, loadImage, loadMask, probeColourProfile, type LoadFit } from './image-file.js';
import { isInitKind, namesFile, type JobConfig } from './options.js';
import type { ItemOutput } from './output.js';
import type { ScaleStep, Size } from './schedule.js';

/** One job's images at one scale, decoded and in the weight set's input space. */
export interface ScaleInputs {
  readonly targets: Targets;
  /** H x W x 3, network space: where the optimisation starts (without a checkpoint or a coarser scale). */
  readonly initial: Float32Array;
  /** How the result becomes a file. */
  readonly output: ItemOutput;
  /** What the user should know (colour profile kept or converted, alpha passed through). */
  readonly notes: readonly Note[];
}

/** A line for the user; `detail`: only when asked for (--verbose), as it says that the default happened. */
export interface Note {
  readonly line: string;
  readonly detail?: boolean;
}

/** How the job's photo (and init image) meets the size of a scale: the size has its aspect, except with contain and cover. */
export function loadFitOf(job: Pick<JobConfig, 'fit'>): LoadFit {
  return job.fit === 'contain' || job.fit === 'cover' ? job.fit : 'fill';
}

/**
 * Decodes and prepares a job's content, styles, masks and start image at the
 * size of `step`. The masks are decoded for each scale at its size: the
 * style masks and the content mask at the output's (fitted as the photo),
 * each style's region at that style image's size.
 */
export async function loadScaleInputs(job: JobConfig, step: ScaleStep, pre: Preprocessing): Promise<ScaleInputs> {
  const { size } = step;
  const notes: Note[] = [];
  const fit = loadFitOf(job);
  const alpha = await contentAlpha(job, size, notes);
  // A content whose alpha is passed through keeps its straight colours; others are flattened on white.
  const contentPixels = await loadImage(job.content, 'content', size, { flatten: !alpha, fit });
  // Luminance mode: the network sees luminance only; the content's chroma comes back at the output.
  const luminance = job.preserveColors === 'luminance';
  const content = toNetworkSpace(luminance ? luminanceImage(contentPixels) : contentPixels, pre);
  const blend = styleBlend(job);
  const styles = [];
  for (let k = 0; k < job.style.length; k++) {
    const image = await loadImage(job.style[k], 'style', step.styleSizes[k]);
    const mask = job.styleMask?.[k];
    const region = job.styleRegion?.[k];
    // With colour preservation each style is adapted to the content it goes with.
    styles.push({
      image: toNetworkSpace(adaptStyle(image, contentPixels, job.preserveColors), pre),
      weight: blend[k],
      ...(mask !== undefined && namesFile('styleMask', mask) ? { mask: await loadMask(mask, 'styleMask', size, fit) } : {}),
      ...(region !== undefined && namesFile('styleRegion', region)
        ? { region: paintingRegion(await loadMask(region, 'styleRegion', step.styleSizes[k]), region) }
        : {}),
    });
  }
  const contentMask = job.contentMask === undefined ? undefined : await loadMask(job.contentMask, 'contentMask', size, fit);
  const icc = await outputProfile(job, notes);
  if (luminance)
    notes.push({ line: "colours: style transferred on luminance only; the output keeps the content's chroma (YIQ)", detail: true });
  if (job.preserveColors === 'histogram')
    notes.push({ line: "colours: the style recoloured to the content's mean and covariance (RGB) before optimisation", detail: true });
  return {
    targets: { content, styles, ...(contentMask ? { contentMask } : {}) },
    initial: initialImage(await initSpec(job, size, pre, fit), content, pre, job.seed),
    output: { bitDepth: job.bitDepth, alpha, icc, chromaFrom: luminance ? contentPixels : undefined },
    notes,
  };
}

/** The style image as the network should see it under the colour mode. */
function adaptStyle(style: RgbImage, content: RgbImage, colours: JobConfig['preserveColors']): RgbLevels {
  if (colours === 'luminance') return luminanceImage(style, content);
  if (colours === 'histogram') {
    const matched = matchColourStatistics(style, content);
    for (let i = 0; i < matched.data.length; i++) matched.data[i] = Math.min(255, Math.max(0, matched.data[i]));
    return matched;
  }
  return style;
}

/** The content's alpha channel at the output size, where the output can hold it. */
async function contentAlpha(job: JobConfig, size: Size, notes: Note[]): Promise<Uint8Array | undefined> {
  const a = await loadAlpha(job.content, 'content', size, loadFitOf(job));
  if (a && /^\.jpe?g$/i.test(path.extname(job.out))) {
    notes.push({ line: `alpha: the alpha channel of '${job.content}' is not kept (${path.extname(job.out)} has none)` });
    return undefined;
  }
  if (a) notes.push({ line: `alpha: the alpha channel of '${job.content}' is passed through`, detail: true });
  return a;
}

/** The ICC profile to convert the output to and embed (the content's, kept), or undefined for sRGB. */
async function outputProfile(job: JobConfig, notes: Note[]): Promise<Uint8Array | undefined> {
  const keep = job.iccProfile === 'keep';
  const profile = await probeColourProfile(job.content, 'content');
  if (!profile) notes.push({ line: `colour profile: '${job.content}' has none embedded: read as sRGB, written as sRGB`, detail: true });
  else if (keep)
    notes.push({
      line: `colour profile: '${job.content}' is in '${profile.description}': kept (worked in sRGB, converted back and embedded)`,
      detail: true,
    });
  else
    notes.push({
      line: `colour profile: '${job.content}' is in '${profile.description}': converted to sRGB`,
      // Only a conversion that changes the colours is news.
      detail: /\bsRGB\b/i.test(profile.description),
    });
  return keep ? profile?.icc : undefined;
}

/** Blend weights of the styles, normalised to sum 1 (equal when not given). */
function styleBlend(job: JobConfig): number[] {
  const raw = job.styleBlendWeights ?? job.style.map(() => 1);
  const sum = raw.reduce((a, b) => a + b, 0);
  return raw.map((w) => w / sum);
}

async function initSpec(job: JobConfig, size: Size, pre: Preprocessing, fit: LoadFit): Promise<InitSpec> {
  if (!isInitKind(job.init)) return { kind: 'image', image: toNetworkSpace(await loadImage(job.init, 'init', size, { fit }), pre) };
  return job.init === 'noise' ? { kind: 'noise', noiseRatio: job.noiseRatio } : { kind: job.init as 'content' | 'random' };
}

/** A style's region, refused when it selects nothing of the painting (its guided Gram would be 0 / 0). */
function paintingRegion(mask: Float32Array, file: string): Float32Array {
  if (mask.some((v) => v > 0)) return mask;
  throw new UserError(`${file} is black: it selects nothing of its painting (white marks the part to use)`, {
    code: 'invalid',
    field: 'styleRegion',
  });
}
