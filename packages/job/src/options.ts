import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  DEFAULT_ADAM,
  DEFAULT_LBFGS,
  DEFAULT_LOSS,
  DEFAULT_NOISE_RATIO,
  DEFAULT_SIZE,
  FITS,
  formatLayers,
  MAX_SIDE,
  UserError,
  type AdamConfig,
  type Fit,
  type LossSpec,
  type LossValues,
  type Pooling,
  type SizeSpec,
  type WeightedLayer,
} from '@nst/core';
import { OUTPUT_EXTENSIONS, SIXTEEN_BIT_EXTENSIONS } from './image-file.js';
import { parseCount, parseLayerList, parseNumber, parseSize } from './parse.js';
import { applyPreset, PRESET_NAMES } from './presets.js';

/**
 * A job: one content image rendered in the style of one or more style
 * images, with every option that says how. Each field has exactly one entry
 * in JOB_OPTIONS (the type below enforces it), and every front end (the CLI's
 * flags, batch manifests, the HTTP API's fields) makes its names, defaults,
 * help and checks from that entry.
 */
export interface JobConfig {
  readonly content: string;
  readonly style: readonly string[];
  readonly styleBlendWeights?: readonly number[];
  readonly styleScale?: number;
  /**
   * Spatial control: where each style applies, one greyscale image per style
   * in the order of `style` (NO_MASK: that style has none); absent: every
   * style everywhere.
   */
  readonly styleMask?: readonly string[];
  /** The part of each style image to use, one greyscale image per style (NO_MASK: all of it). */
  readonly styleRegion?: readonly string[];
  /** The content loss's weight per pixel, a greyscale image; absent: 1 everywhere. */
  readonly contentMask?: string;
  readonly out: string;
  readonly size: SizeSpec;
  readonly fit: Fit;
  readonly iterations: number;
  readonly alpha: number;
  readonly beta: number;
  readonly tvWeight: number;
  readonly lr: number;
  readonly contentLayers: readonly WeightedLayer[];
  readonly styleLayers: readonly WeightedLayer[];
  readonly pooling: Pooling;
  /** One of INIT_KINDS, or an image file. */
  readonly init: string;
  readonly noiseRatio: number;
  readonly seed: number;
  readonly printEvery: number;
  readonly saveEvery: number;
  readonly checkpointEvery: number;
  readonly resume: boolean;
  readonly fresh: boolean;
  readonly preset: string;
  readonly optimizer: 'adam' | 'lbfgs';
  readonly lbfgsHistory: number;
  readonly preserveColors: 'none' | 'luminance' | 'histogram';
  readonly scales?: readonly SizeSpec[] | 'auto';
  readonly scaleIterations?: readonly number[];
  readonly bitDepth: 8 | 16;
  readonly iccProfile: 'srgb' | 'keep';
  readonly weights?: string;
  /** MiB the render may use at its peak (its memory plan's budget, plan.ts); absent: what the machine has free less a margin. */
  readonly memory?: number;
  /** Exact tiling: auto (untiled when the plan fits the budget, else tile by tile), off, or the tiles' core in pixels. */
  readonly tile: 'auto' | 'off' | number;
  // ---- video (nst video; video.ts): a frame is a job, these say how frames follow each other
  /** The temporal loss's weight (0: none). */
  readonly temporalWeight: number;
  /** Iterations of a video's first frame (undefined: twice `iterations`). */
  readonly firstFrameIterations?: number;
  /** Where a later frame starts: the previous result warped by the optical flow, or its own init. */
  readonly frameInit: 'warped' | 'independent';
  /** OpenCV's DIS preset for the optical flow. */
  readonly flowPreset: 'fast' | 'medium';
  /** Frames per second of a video made from a folder of frames (a video file keeps its own). */
  readonly frameRate?: number;
}

/** A value as a front end received it: text (CLI, CSV, form fields), a number or a boolean (JSON), or a list. */
export type OptionValue = string | number | boolean | readonly (string | number)[];
/** Option values by job field (camelCase); undefined: not given. */
export type JobOptionValues = Readonly<Record<string, OptionValue | undefined>>;

/** The front ends that take options from users ('video': `nst video`, whose frames are jobs; 'http' takes the video ones with a video upload). */
export type FrontEnd = 'cli' | 'manifest' | 'http' | 'video';

/** One option: how front ends name, document and parse it. */
export interface OptionSpec<T> {
  /** A one-letter CLI alias, if any. */
  readonly short?: string;
  /** What the value looks like, for help texts ('file', 'n', 'x'); absent: a switch with no value. */
  readonly value?: string;
  readonly description: string;
  /** The default as text (what a user would type): parsed like a given value. Absent: none, or the option is required. */
  readonly default?: string;
  readonly choices?: readonly string[];
  /** The CLI takes it several times (a list; for `content`, several jobs). */
  readonly repeatable?: boolean;
  readonly required?: boolean;
  /**
   * The job's own inputs and outputs (its images, how its styles blend, where
   * it writes): the only options in which the jobs of one engine batch may
   * differ. Every other option changes how the result is made or written, so
   * jobs are packed together only where all of them are equal, and each then
   * gets exactly what it would get alone.
   */
  readonly perItem?: true;
  /** Its values name files: manifests resolve them against their folder, and the fingerprint counts inputs by content. */
  readonly paths?: true;
  /** With `paths`: the values that name no file (init's kinds, a mask list's NO_MASK). */
  readonly notFile?: (value: string) => boolean;
  /** It does not change the picture (where it goes, what is reported): the job's fingerprints leave it out. */
  readonly result?: false;
  /**
   * It changes where the optimisation stops or how its result is written,
   * not the path it takes: a checkpoint may be resumed with another value
   * (`--resume --iterations 400` extends a run).
   */
  readonly resumable?: true;
  /** The front ends that take it from users (default: all). */
  readonly frontEnds?: readonly FrontEnd[];
  /**
   * Added after results began to record their settings and fingerprints:
   * while it has its default (or, with none, is not given), fingerprints and
   * settings leave it out, so that every result made before it existed keeps
   * its fingerprint (and a re-run of a batch does not render it again).
   */
  readonly omitWhenDefault?: true;
  /** The HTTP API takes it as an uploaded file, not as a text field. */
  readonly upload?: true;
  /** Parses a given (or default) value; errors name `field`. */
  readonly parse: (value: OptionValue, field: string) => T;
  /**
   * A parsed value as text `parse` reads back to the same value (results
   * carry their settings this way: formatOption). Default: String(value), a
   * list item by item.
   */
  format?(value: T): OptionValue;
}

export type OptionTable = { readonly [K in keyof JobConfig]-?: OptionSpec<JobConfig[K]> };

/** `init` values that are not files. */
export const INIT_KINDS = ['noise', 'content', 'random'] as const;
export const isInitKind = (init: string): boolean => (INIT_KINDS as readonly string[]).includes(init);

/** In a list of masks (styleMask, styleRegion): no mask for that style. `-` is read as this too. */
export const NO_MASK = 'none';
const isNoMask = (value: string): boolean => value === NO_MASK || value === '-';

/** Whether `value`, a value of the paths option `field`, names a file (not `noise` for init, not NO_MASK in a mask list). */
export function namesFile(field: keyof JobConfig | string, value: string): boolean {
  const spec = JOB_OPTIONS[field as keyof JobConfig] as OptionSpec<unknown> | undefined;
  return spec?.paths === true && !spec.notFile?.(value);
}

/** The job fields of spatial control, in the order errors name them. */
export const MASK_FIELDS = ['styleMask', 'styleRegion', 'contentMask'] as const;

/** The first mask option a job gives a mask in (a list of NO_MASK only gives none), or undefined: the job has no masks. */
export function maskedField(job: Pick<JobConfig, (typeof MASK_FIELDS)[number]>): (typeof MASK_FIELDS)[number] | undefined {
  return MASK_FIELDS.find((f) => {
    const v = job[f];
    return v !== undefined && (Array.isArray(v) ? v : [v]).some((x: string) => !isNoMask(x));
  });
}

/**
 * What a job's masks add to its memory (core's MemoryShape.regions and
 * .contentMask), from its options alone: one style region per distinct
 * style mask (styles without one share a region), none without masks.
 */
export function maskShape(job: Pick<JobConfig, (typeof MASK_FIELDS)[number]>): { regions: number; contentMask: boolean } {
  const contentMask = job.contentMask !== undefined && !isNoMask(job.contentMask);
  const styles = maskedField({ ...job, contentMask: undefined });
  return { regions: styles ? new Set(job.styleMask ?? [NO_MASK]).size : 0, contentMask };
}

/** Seeds are 32-bit, as in random:SEED weights. */
export const MAX_SEED = 2 ** 32 - 1;

/**
 * The largest loss weight (alpha, beta, the smoothness weight, and each of
 * them times a layer's weight). The engines compute in float32, and Adam
 * keeps the squared gradient, which overflows (the image then stops moving)
 * once a gradient passes 1.8e19. The pixel gradient per unit of style
 * weight measured about 25 at the start of the example's render (real blocks
 * 1-3, 400x300) and 2 with random full VGG-19; the notebook's weights are
 * 40 x 0.2. 1e12 leaves more than 1e5 of headroom above any such render.
 */
export const MAX_LOSS_WEIGHT = 1e12;

// ---- value parsers (errors name the field; the front end names it its way) ----

function text(v: OptionValue, field: string): string {
  if (Array.isArray(v)) {
    if (v.length !== 1) throw new UserError('expected one value, got a list', { field });
    return String(v[0]);
  }
  return String(v);
}
const list = (v: OptionValue): string[] => (Array.isArray(v) ? v.map(String) : [String(v)]).filter((s) => s.trim() !== '');
const count =
  (min = 0, max?: number) =>
  (v: OptionValue, field: string) =>
    parseCount(text(v, field), field, min, max);
const choice =
  <T extends string>(choices: readonly T[]) =>
  (v: OptionValue, field: string): T => {
    const t = text(v, field);
    if (!(choices as readonly string[]).includes(t)) throw new UserError(`'${t}' is not one of ${choices.join(', ')}`, { field });
    return t as T;
  };
const lossWeight = (v: OptionValue, field: string) => {
  const x = parseNumber(text(v, field), field);
  if (x < 0) throw new UserError(`expected a number >= 0, got ${x}`, { field });
  if (x > MAX_LOSS_WEIGHT) throw new UserError(`${x} is too large (at most ${MAX_LOSS_WEIGHT}: the engines compute in float32)`, { field });
  return x;
};
const positive = (v: OptionValue, field: string) => {
  const x = parseNumber(text(v, field), field);
  if (!(x > 0)) throw new UserError(`expected a positive number, got ${x}`, { field });
  return x;
};
const filePath = (v: OptionValue, field: string) => {
  const t = text(v, field);
  if (t.trim() === '') throw new UserError('expected a file path', { field });
  return path.normalize(t);
};
const outputPath = (v: OptionValue, field: string) => {
  const file = filePath(v, field);
  if (file.endsWith(path.sep))
    throw new UserError(`'${file}' ends with a slash: it names a folder, not a file`, { code: 'unwritable', field });
  if (!(OUTPUT_EXTENSIONS as readonly string[]).includes(path.extname(file).toLowerCase()))
    throw new UserError(`'${file}' has no supported image extension (${OUTPUT_EXTENSIONS.join(', ')})`, { field });
  return file;
};
const layers = (v: OptionValue, field: string) => {
  const parsed = parseLayerList(text(v, field), field);
  for (const l of parsed)
    if (l.weight > MAX_LOSS_WEIGHT)
      throw new UserError(`the weight ${l.weight} of ${l.layer} is too large (at most ${MAX_LOSS_WEIGHT})`, { field });
  return parsed;
};
const sizeList = (v: OptionValue, field: string): readonly SizeSpec[] | 'auto' => {
  const items = list(v).flatMap((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  );
  if (items.length === 1 && items[0].toLowerCase() === 'auto') return 'auto';
  if (items.length === 0) throw new UserError("expected 'auto' or sizes such as 256,362", { field });
  return items.map((s) => parseSize(s, field));
};
/** Files given as a list: 'a.jpg,b.jpg' is two unless a file of that very name exists. */
const fileItems = (v: OptionValue): string[] =>
  list(v).flatMap((s) =>
    existsSync(s)
      ? [s]
      : s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
  );

/**
 * A list of files, one per style ('a.png,b.png' is two unless a file of
 * that very name exists): a file, or NO_MASK (`none` or `-`) for a style
 * that has none.
 */
const fileList = (v: OptionValue, field: string): string[] => {
  const items = fileItems(v);
  if (items.length === 0) throw new UserError(`expected a file per style image (or ${NO_MASK})`, { field });
  return items.map((s) => (isNoMask(s) ? NO_MASK : filePath(s, field)));
};
/** A list of mask files, one per style, in order (styleMask, styleRegion): the still front ends take them. */
const maskListOption = (description: string): OptionSpec<readonly string[] | undefined> => ({
  paths: true,
  notFile: isNoMask,
  value: 'file',
  repeatable: true,
  upload: true,
  omitWhenDefault: true,
  frontEnds: ['cli', 'manifest', 'http'],
  description,
  parse: fileList,
});
const boolean = (v: OptionValue, field: string) => {
  if (typeof v === 'boolean') return v;
  const t = text(v, field);
  if (t !== 'true' && t !== 'false') throw new UserError(`'${t}' is not true or false`, { field });
  return t === 'true';
};

/**
 * nst video's temporal weight when none is given (the table's default, 0,
 * is every still's): chosen on bench/video (README's Video section) so that
 * the warping error between output frames falls well below independent
 * stylisation's while the style stays that of a still.
 */
export const VIDEO_TEMPORAL_WEIGHT = 100_000;

/** The one description of every job option. Key order is the order of help texts. */
export const JOB_OPTIONS: OptionTable = {
  content: {
    paths: true,
    short: 'c',
    value: 'file',
    required: true,
    repeatable: true,
    perItem: true,
    upload: true,
    description: 'content image (several: one job each, and out is then a folder)',
    parse: filePath,
  },
  style: {
    paths: true,
    short: 's',
    value: 'file',
    required: true,
    repeatable: true,
    perItem: true,
    upload: true,
    description: 'style image (repeat, or separate with commas, to blend several)',
    parse: fileItems,
  },
  styleBlendWeights: {
    value: 'w,...',
    perItem: true,
    description: 'blend weights of the style images (default: equal)',
    parse: (v, field) => {
      const weights = list(v)
        .flatMap((s) => s.split(','))
        .map((w) => parseNumber(w, field));
      if (weights.some((w) => !(w >= 0)) || !(weights.reduce((a, b) => a + b, 0) > 0))
        throw new UserError('weights must be non-negative with a positive sum', { field });
      return weights;
    },
  },
  styleScale: {
    value: 'x',
    description: "resize style images to x times the output's longest side (default: the output size)",
    parse: positive,
  },
  // Masks are not perItem: jobs with different masks are never packed into one engine batch (the packing key holds them).
  styleMask: maskListOption(
    "where each style applies: a greyscale image per --style, in order (white: that style, grey: a soft edge, black: not there; 'none': everywhere), fitted to the output as the photo; where no style's mask reaches, only the content loss acts",
  ),
  styleRegion: maskListOption(
    "the part of each style image to use: a greyscale image per --style, in order, white where it counts ('none': all of it)",
  ),
  contentMask: {
    paths: true,
    value: 'file',
    upload: true,
    omitWhenDefault: true,
    frontEnds: ['cli', 'manifest', 'http'],
    description:
      "the content loss's weight per pixel: a greyscale image (white: keep the photo, black: the style alone), fitted as the photo",
    parse: filePath,
  },
  out: {
    paths: true,
    result: false,
    short: 'o',
    value: 'file',
    required: true,
    perItem: true,
    frontEnds: ['cli', 'manifest'],
    description: `output image (${OUTPUT_EXTENSIONS.join(', ')}), written when the render ends; an interrupted one leaves <stem>.partial<ext>`,
    parse: outputPath,
  },
  size: {
    value: 'WxH|N',
    default: formatSize(DEFAULT_SIZE),
    description: "output size: N = the longest side, keeping each photo's aspect; WxH = a box the photo meets as --fit says",
    parse: (v, field) => parseSize(text(v, field), field),
    format: formatSize,
  },
  fit: {
    value: 'mode',
    default: 'inside',
    choices: FITS,
    description:
      'how a photo meets a WxH size (as sharp): inside (the largest size within WxH, aspect kept), contain (WxH, padded), cover (WxH, cropped), fill (WxH, stretched), outside (the smallest size around WxH, aspect kept)',
    parse: choice(FITS),
  },
  iterations: { short: 'n', value: 'n', default: '200', resumable: true, description: 'optimiser iterations', parse: count() },
  alpha: { value: 'x', default: String(DEFAULT_LOSS.alpha), description: 'content weight (alpha)', parse: lossWeight },
  beta: { value: 'x', default: String(DEFAULT_LOSS.beta), description: 'style weight (beta)', parse: lossWeight },
  tvWeight: { value: 'x', default: String(DEFAULT_LOSS.tvWeight), description: 'total-variation weight (smoothness)', parse: lossWeight },
  lr: { value: 'x', default: String(DEFAULT_ADAM.lr), description: 'Adam learning rate, in pixel levels', parse: positive },
  contentLayers: {
    value: 'list',
    default: formatLayers(DEFAULT_LOSS.contentLayers),
    description: 'content layers with weights',
    parse: layers,
    format: formatLayers,
  },
  styleLayers: {
    value: 'list',
    default: formatLayers(DEFAULT_LOSS.styleLayers),
    description: 'style layers with weights',
    parse: layers,
    format: formatLayers,
  },
  pooling: { value: 'kind', default: 'avg', choices: ['avg', 'max'], description: 'pooling in the network', parse: choice(['avg', 'max']) },
  init: {
    paths: true,
    notFile: isInitKind,
    value: `${INIT_KINDS.join('|')}|file`,
    default: 'noise',
    description: 'initial image',
    parse: (v, field) => {
      const t = text(v, field);
      return isInitKind(t) ? t : filePath(t, field);
    },
  },
  noiseRatio: {
    value: 'x',
    default: String(DEFAULT_NOISE_RATIO),
    description: 'share of noise in the noise init',
    parse: (v, field) => {
      const x = parseNumber(text(v, field), field);
      if (!(x >= 0 && x <= 1)) throw new UserError(`${x} is not in 0..1`, { field });
      return x;
    },
  },
  seed: { value: 'n', default: '0', description: 'random seed (same seed, same result on the same backend)', parse: count(0, MAX_SEED) },
  printEvery: { value: 'n', default: '20', result: false, description: 'report losses every n iterations', parse: count(1) },
  saveEvery: {
    value: 'n',
    default: '0',
    result: false,
    frontEnds: ['cli', 'manifest'],
    description: 'also save a snapshot <stem>_<iteration><ext> every n iterations (0: only the output)',
    parse: count(),
  },
  checkpointEvery: {
    value: 'n',
    result: false,
    frontEnds: ['cli', 'manifest'],
    default: '0',
    description: 'write a resumable checkpoint <out>.ckpt every n iterations (0: only on interrupt)',
    parse: count(),
  },
  resume: {
    result: false,
    default: 'false',
    frontEnds: ['cli'],
    description: 'continue from <out>.ckpt when it exists',
    parse: boolean,
  },
  fresh: {
    result: false,
    default: 'false',
    frontEnds: ['cli', 'video'],
    description: 'discard <out>.ckpt (an interrupted run of this output) and start again',
    parse: boolean,
  },
  preset: {
    result: false,
    value: 'name',
    default: 'notebook',
    choices: PRESET_NAMES,
    description: 'quality preset: fills the options not given (notebook: the spec; jcjohnson: neural-style; hq: multi-scale L-BFGS)',
    parse: choice(PRESET_NAMES),
  },
  optimizer: {
    value: 'name',
    default: 'adam',
    choices: ['adam', 'lbfgs'],
    description: "optimiser: adam (the notebook's) or lbfgs (neural-style's; strong-Wolfe line search)",
    parse: choice(['adam', 'lbfgs']),
  },
  lbfgsHistory: {
    value: 'n',
    default: String(DEFAULT_LBFGS.history),
    description: 'L-BFGS: curvature pairs kept (memory: 2 x n x the image, float32)',
    parse: count(1, 10_000),
  },
  preserveColors: {
    value: 'mode',
    default: 'none',
    choices: ['none', 'luminance', 'histogram'],
    description:
      "keep the content's colours: luminance (style on luminance only, chroma of the content) or histogram (style recoloured to the content's colour statistics)",
    parse: choice(['none', 'luminance', 'histogram']),
  },
  scales: {
    value: 'N,...|auto',
    description:
      'coarse-to-fine: longest sides of the coarser passes before the final size (auto: a factor sqrt(2) apart from about 256 px)',
    parse: sizeList,
    format: (v) => (v === undefined || v === 'auto' ? String(v) : v.map(formatSize).join(',')),
  },
  scaleIterations: {
    value: 'n[,n...]',
    resumable: true,
    description: 'iterations of each scale, coarse to fine (one number: every scale; default: --iterations each)',
    parse: (v, field) =>
      list(v)
        .flatMap((s) => s.split(','))
        .map((n) => parseCount(n, field)),
  },
  bitDepth: {
    value: 'bits',
    resumable: true,
    default: '8',
    choices: ['8', '16'],
    description: 'bits per channel of the output (16: .png and .tif only)',
    parse: (v, field) => Number(choice(['8', '16'])(v, field)) as 8 | 16,
  },
  iccProfile: {
    value: 'mode',
    resumable: true,
    default: 'srgb',
    choices: ['srgb', 'keep'],
    description:
      "output colour profile: srgb (the content's profile converted to sRGB) or keep (converted back to the content's profile and embedded)",
    parse: choice(['srgb', 'keep']),
  },
  weights: {
    result: false,
    short: 'w',
    value: 'path|embedded|random:SEED',
    frontEnds: ['cli', 'video'],
    description: 'VGG-19 weights (default: $NST_WEIGHTS, else the installed set, else the built-in blocks 1-3)',
    parse: (v, field) => text(v, field),
  },
  memory: {
    value: 'MiB',
    result: false,
    resumable: true,
    description:
      "memory the render may use at its peak (the process's; cuda: the GPU's), by its memory plan (nst plan prints it); it tiles to fit (default: what is free less a margin)",
    parse: count(1, 2 ** 30),
  },
  tile: {
    value: 'auto|off|N',
    default: 'auto',
    // Tiled renders are exact: the same picture, so neither the result's fingerprint nor a checkpoint depends on it.
    result: false,
    resumable: true,
    description:
      'auto: untiled when the memory plan fits, else tile by tile (exact); off: never tile; N: tiles of N pixels (a multiple of 16) and their halo',
    parse: (v, field) => {
      const t = text(v, field).trim();
      if (t === 'auto' || t === 'off') return t;
      const n = /^\d+$/.test(t) ? Number(t) : NaN;
      if (!(n >= 16 && n % 16 === 0 && n <= MAX_SIDE))
        throw new UserError(`'${t}' is not auto, off or a multiple of 16 pixels (16..${MAX_SIDE})`, { field });
      return n;
    },
  },
  temporalWeight: {
    value: 'x',
    default: '0',
    omitWhenDefault: true,
    frontEnds: ['video', 'http'],
    description: `video: weight of the temporal loss (Ruder et al. 2016), which keeps each pixel that is not occluded where the previous stylised frame, warped by the optical flow, put it (nst video's default: ${VIDEO_TEMPORAL_WEIGHT}; 0: none)`,
    parse: lossWeight,
  },
  firstFrameIterations: {
    value: 'n',
    omitWhenDefault: true,
    resumable: true,
    frontEnds: ['video', 'http'],
    description:
      "video: iterations of the first frame, which starts from the job's init (default: twice --iterations, the iterations of each later frame)",
    parse: count(),
  },
  frameInit: {
    value: 'mode',
    default: 'warped',
    omitWhenDefault: true,
    choices: ['warped', 'independent'],
    frontEnds: ['video', 'http'],
    description:
      "video: where each later frame starts: warped (the previous stylised frame warped by the optical flow, the content where it was occluded) or independent (the job's init, as the first frame)",
    parse: choice(['warped', 'independent']),
  },
  flowPreset: {
    value: 'preset',
    default: 'medium',
    omitWhenDefault: true,
    choices: ['fast', 'medium'],
    frontEnds: ['video', 'http'],
    description: "video: OpenCV's DIS optical flow preset (medium: more accurate; fast: quicker)",
    parse: choice(['fast', 'medium']),
  },
  frameRate: {
    value: 'fps',
    result: false,
    omitWhenDefault: true,
    frontEnds: ['video'],
    description: 'video: frames per second of the output when the input is a folder of frames (default 25; a video file keeps its own)',
    parse: positive,
  },
};

/** The job fields in table order. */
export const JOB_FIELDS = Object.keys(JOB_OPTIONS) as (keyof JobConfig)[];

/** The options a front end takes from users (an option that names none is taken by all). */
export function optionsFor(frontEnd: FrontEnd): (keyof JobConfig)[] {
  return JOB_FIELDS.filter((f) => (JOB_OPTIONS[f].frontEnds ?? ['cli', 'manifest', 'http', 'video']).includes(frontEnd));
}

/**
 * Whether an option is a video's only (its front ends take it for videos,
 * and the CLI's still commands do not): the HTTP API takes those it lists
 * only with a video upload.
 */
export function isVideoOption(field: keyof JobConfig): boolean {
  const ends = JOB_OPTIONS[field].frontEnds;
  return ends?.includes('video') === true && !ends.includes('cli');
}

/** Whether fingerprints and settings leave a job's value of `field` out (OptionSpec.omitWhenDefault). */
export function omittedFromSettings<K extends keyof JobConfig>(field: K, value: JobConfig[K]): boolean {
  const spec = JOB_OPTIONS[field] as OptionSpec<JobConfig[K]>;
  if (!spec.omitWhenDefault) return false;
  if (value === undefined) return true;
  return (
    spec.default !== undefined &&
    JSON.stringify(formatOption(field, value)) === JSON.stringify(formatOption(field, spec.parse(spec.default, field)))
  );
}

/**
 * Parses a job's option values (keys: job fields, camelCase) into a
 * JobConfig: the preset fills what was not given, then each option's default,
 * then every value is parsed and checked, then the checks that involve
 * several options run. Unknown keys are an error. This is the one validation
 * of a job's options: every front end calls it before anything is queued or read.
 */
export function jobFromOptions(given: JobOptionValues): JobConfig {
  for (const key of Object.keys(given))
    if (given[key] !== undefined && !(key in JOB_OPTIONS)) throw new UserError(`'${key}' is not a job option`, { field: key });
  const values = applyPreset(given, given.preset === undefined ? undefined : String(given.preset));
  const config: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) {
    const spec: OptionSpec<unknown> = JOB_OPTIONS[field];
    const v = values[field];
    const given = v !== undefined && !(typeof v === 'string' && v.trim() === '') && !(Array.isArray(v) && v.length === 0);
    const raw = given ? v : spec.default;
    if (raw === undefined) {
      if (spec.required) throw new UserError('is required', { field });
      continue;
    }
    config[field] = spec.parse(raw, field);
  }
  const job = config as unknown as JobConfig;
  checkAcrossOptions(job);
  return job;
}

/** Checks that involve several options (each names the one to change). */
function checkAcrossOptions(job: JobConfig): void {
  if (job.styleBlendWeights && job.styleBlendWeights.length !== job.style.length)
    throw new UserError(`${job.styleBlendWeights.length} weights given for ${job.style.length} style images`, {
      field: 'styleBlendWeights',
    });
  for (const field of ['styleMask', 'styleRegion'] as const) {
    const given = job[field];
    if (given && given.length !== job.style.length)
      throw new UserError(
        `${given.length} ${field === 'styleMask' ? 'style masks' : 'style regions'} given for ${job.style.length} style image${job.style.length === 1 ? '' : 's'} (one per style, in order; ${NO_MASK} for a style without)`,
        { field },
      );
  }
  if (job.resume && job.fresh)
    throw new UserError('resume and fresh together: the one continues the checkpoint, the other discards it; give one', {
      code: 'conflict',
      field: 'fresh',
    });
  if (job.alpha === 0 && job.beta === 0)
    throw new UserError('alpha and beta are both 0: neither the content nor the style would count', { field: 'beta' });
  for (const [field, weight, layerList] of [
    ['alpha', job.alpha, job.contentLayers],
    ['beta', job.beta, job.styleLayers],
  ] as const)
    for (const l of layerList)
      if (weight * l.weight > MAX_LOSS_WEIGHT)
        throw new UserError(`${weight} times the weight ${l.weight} of ${l.layer} is too large (at most ${MAX_LOSS_WEIGHT})`, { field });
  if (job.bitDepth === 16 && !(SIXTEEN_BIT_EXTENSIONS as readonly string[]).includes(path.extname(job.out).toLowerCase()))
    throw new UserError(`'${job.out}' cannot hold 16 bits per channel: use .png or .tif`, { code: 'unsupported', field: 'bitDepth' });
  if (job.bitDepth === 16 && job.iccProfile === 'keep')
    throw new UserError("keeping the content's colour profile needs 8 bits per channel", { code: 'unsupported', field: 'iccProfile' });
  const longest = job.size.kind === 'exact' ? Math.max(job.size.width, job.size.height) : job.size.longest;
  if (job.styleScale !== undefined && Math.round(job.styleScale * longest) > MAX_SIDE)
    throw new UserError(
      `${job.styleScale} would resize the style images to ${Math.round(job.styleScale * longest)} pixels on their longest side (at most ${MAX_SIDE})`,
      { code: 'too-large', field: 'styleScale' },
    );
}

/** The loss a job asks for (a temporal weight only where it has one: a video's frame). */
export function lossOf(job: JobConfig): LossSpec {
  const loss = { contentLayers: job.contentLayers, styleLayers: job.styleLayers, alpha: job.alpha, beta: job.beta, tvWeight: job.tvWeight };
  return job.temporalWeight ? { ...loss, temporalWeight: job.temporalWeight } : loss;
}

/** Adam's hyper-parameters of a job (lr in pixel levels, as the user gave it). */
export function adamOf(job: JobConfig): AdamConfig {
  return { ...DEFAULT_ADAM, lr: job.lr };
}

/**
 * What must be equal for jobs to share an engine batch: every option but the
 * per-item ones (their inputs and outputs), plus what the files decide (the
 * output size) and where each resumes. Derived from the option table, so an
 * option added to it is part of the key unless it says it is per item.
 */
export function packingKey(job: JobConfig, size: { width: number; height: number }, resumeAt: unknown): string {
  const shared: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) if (!JOB_OPTIONS[field].perItem) shared[field] = job[field] ?? null;
  return JSON.stringify({ shared, size, resumeAt });
}

/** A size as `parseSize` reads it: `400x300` or `512`. */
function formatSize(size: SizeSpec): string {
  return size.kind === 'exact' ? `${size.width}x${size.height}` : String(size.longest);
}

/**
 * A job's value of `field` as text its parser reads back to the same value
 * (numbers as JavaScript writes them, which parse to the same double): what
 * results record of their settings.
 */
export function formatOption<K extends keyof JobConfig>(field: K, value: JobConfig[K]): OptionValue {
  const spec = JOB_OPTIONS[field] as OptionSpec<JobConfig[K]>;
  if (spec.format) return spec.format(value);
  return Array.isArray(value) ? value.map(String) : String(value);
}

/**
 * The terms of a loss's total: alpha x J_content, beta x J_style,
 * tv-weight x J_tv (and temporal-weight x J_temporal, video), which add up
 * to `total` (what results report).
 */
export function weightedLosses(
  job: Pick<JobConfig, 'alpha' | 'beta' | 'tvWeight'> & Partial<Pick<JobConfig, 'temporalWeight'>>,
  l: LossValues,
): LossValues {
  const terms = { content: job.alpha * l.content, style: job.beta * l.style, tv: job.tvWeight * l.tv };
  return l.temporal === undefined
    ? { ...terms, total: l.total }
    : { ...terms, temporal: (job.temporalWeight ?? 0) * l.temporal, total: l.total };
}
