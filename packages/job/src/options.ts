import { existsSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_LOSS, UserError, type SizeSpec, type WeightedLayer } from '@nst/core';
import { MAX_SEED, RENDER_DEFAULTS, type RenderConfig } from './job.js';
import { parseCount, parseLayerList, parseNumber, parseSize } from './parse.js';
import { applyPreset, PRESET_NAMES } from './presets.js';

/**
 * The one description of a render job's options, shared by every front end:
 * the CLI makes its flags from it (`--` + the kebab-case field), batch
 * manifests and the HTTP API take the same names as keys. `jobFromOptions`
 * is the one place that turns such values into a RenderConfig.
 */
export interface JobOption {
  /** The job field, camelCase: 'contentLayers'. Its kebab-case form is the flag and the JSON key. */
  readonly field: string;
  /** A one-letter CLI alias, if any. */
  readonly short?: string;
  /** What the value looks like, for help texts: 'file', 'n', 'x'. Absent: a switch with no value. */
  readonly value?: string;
  readonly description: string;
  /** The default, as text (what the user would type); absent: none or computed. */
  readonly default?: string;
  /** The option may be given several times (a list). */
  readonly repeatable?: boolean;
  readonly choices?: readonly string[];
  readonly required?: boolean;
}

const layerText = (layers: readonly WeightedLayer[]) => layers.map((l) => `${l.layer}:${l.weight}`).join(',');
const d = RENDER_DEFAULTS;

export const JOB_OPTIONS: readonly JobOption[] = [
  {
    field: 'content',
    short: 'c',
    value: 'file',
    required: true,
    repeatable: true,
    description: 'content image (repeat for a batch: out is then a folder)',
  },
  {
    field: 'style',
    short: 's',
    value: 'file',
    required: true,
    repeatable: true,
    description: 'style image (repeat, or separate with commas, to blend several)',
  },
  { field: 'styleBlendWeights', value: 'w,...', description: 'blend weights of the style images (default: equal)' },
  { field: 'styleScale', value: 'x', description: "resize style images to x times the output's longest side (default: the output size)" },
  {
    field: 'out',
    short: 'o',
    value: 'file',
    required: true,
    description: 'output image (.png, .jpg, .jpeg, .webp, .tif, .tiff, .avif); intermediate saves go to <stem>_<iteration><ext>',
  },
  { field: 'size', value: 'WxH|N', default: '400x300', description: 'output size: WIDTHxHEIGHT, or N = longest side keeping the aspect' },
  { field: 'iterations', short: 'n', value: 'n', default: String(d.iterations), description: 'optimiser iterations' },
  { field: 'alpha', value: 'x', default: String(DEFAULT_LOSS.alpha), description: 'content weight (alpha)' },
  { field: 'beta', value: 'x', default: String(DEFAULT_LOSS.beta), description: 'style weight (beta)' },
  { field: 'tvWeight', value: 'x', default: String(DEFAULT_LOSS.tvWeight), description: 'total-variation weight (smoothness)' },
  { field: 'lr', value: 'x', default: String(d.adam.lr), description: 'Adam learning rate, in pixel levels' },
  { field: 'contentLayers', value: 'list', default: layerText(DEFAULT_LOSS.contentLayers), description: 'content layers with weights' },
  { field: 'styleLayers', value: 'list', default: layerText(DEFAULT_LOSS.styleLayers), description: 'style layers with weights' },
  { field: 'pooling', value: 'kind', default: d.pooling, choices: ['avg', 'max'], description: 'pooling in the network' },
  { field: 'init', value: 'noise|content|random|file', default: d.init, description: 'initial image' },
  { field: 'noiseRatio', value: 'x', default: String(d.noiseRatio), description: 'share of noise in the noise init' },
  { field: 'seed', value: 'n', default: String(d.seed), description: 'random seed (same seed, same result on the same backend)' },
  { field: 'printEvery', value: 'n', default: String(d.printEvery), description: 'report losses every n iterations' },
  { field: 'saveEvery', value: 'n', default: String(d.saveEvery), description: 'save the image every n iterations (0: only the final)' },
  {
    field: 'checkpointEvery',
    value: 'n',
    default: String(d.checkpointEvery),
    description: 'write a resumable checkpoint <out>.ckpt every n iterations (0: only on interrupt)',
  },
  { field: 'resume', description: 'continue from <out>.ckpt when it exists' },
  {
    field: 'preset',
    value: 'name',
    default: 'notebook',
    choices: PRESET_NAMES,
    description: 'quality preset: fills the options not given (notebook: the spec; jcjohnson: neural-style; hq: multi-scale L-BFGS)',
  },
  {
    field: 'optimizer',
    value: 'name',
    default: 'adam',
    choices: ['adam', 'lbfgs'],
    description: "optimiser: adam (the notebook's) or lbfgs (neural-style's; strong-Wolfe line search)",
  },
  { field: 'lbfgsHistory', value: 'n', default: '100', description: 'L-BFGS: curvature pairs kept (memory: 2 x n x the image, float32)' },
  {
    field: 'preserveColors',
    value: 'mode',
    default: 'none',
    choices: ['none', 'luminance', 'histogram'],
    description:
      "keep the content's colours: luminance (style on luminance only, chroma of the content) or histogram (style recoloured to the content's colour statistics)",
  },
  {
    field: 'scales',
    value: 'N,...|auto',
    description:
      'coarse-to-fine: longest sides of the coarser passes before the final size (auto: a factor sqrt(2) apart from about 256 px)',
  },
  {
    field: 'scaleIterations',
    value: 'n[,n...]',
    description: 'iterations of each scale, coarse to fine (one number: every scale; default: --iterations each)',
  },
  {
    field: 'bitDepth',
    value: 'bits',
    default: '8',
    choices: ['8', '16'],
    description: 'bits per channel of the output (16: .png and .tif only)',
  },
  {
    field: 'iccProfile',
    value: 'mode',
    default: 'srgb',
    choices: ['srgb', 'keep'],
    description:
      "output colour profile: srgb (the content's profile converted to sRGB) or keep (converted back to the content's profile and embedded)",
  },
  {
    field: 'weights',
    short: 'w',
    value: 'path|random:SEED',
    description: 'VGG-19 weights (default: $NST_WEIGHTS, else the installed set)',
  },
];

/** Option values as a front end received them: text (CLI, CSV, form fields), numbers and booleans (JSON). */
export type JobOptionValues = Readonly<Record<string, string | number | boolean | readonly (string | number)[] | undefined>>;

/**
 * Parses a job's option values (keys: the fields of JOB_OPTIONS, camelCase)
 * into a RenderConfig, applying the defaults. Unknown keys are an error.
 */
export function jobFromOptions(given: JobOptionValues): RenderConfig & { readonly weights?: string } {
  const known = new Set(JOB_OPTIONS.map((o) => o.field));
  for (const key of Object.keys(given))
    if (given[key] !== undefined && !known.has(key)) throw new UserError(`'${key}' is not a render option`, { field: key });
  const presetName = given.preset === undefined ? undefined : String(given.preset);
  const values = applyPreset(given, presetName);
  const text = (field: string): string | undefined => {
    const v = values[field];
    if (v === undefined) return JOB_OPTIONS.find((o) => o.field === field)?.default;
    if (Array.isArray(v)) throw new UserError('expected one value, got a list', { field });
    return String(v);
  };
  const list = (field: string): string[] => {
    const v = values[field];
    if (v === undefined || v === '') return [];
    return (Array.isArray(v) ? v : [v]).map(String);
  };
  const required = (field: string): string[] => {
    const items = list(field);
    if (items.length === 0) throw new UserError('is required', { field });
    return items;
  };
  const num = (field: string) => parseNumber(text(field)!, field);
  const count = (field: string, min = 0, max?: number) => parseCount(text(field)!, field, min, max);
  const optional = <T>(field: string, parse: (t: string) => T): T | undefined => {
    const t = text(field);
    return t === undefined ? undefined : parse(t);
  };
  const out = required('out');
  if (out.length > 1) throw new UserError('expected one output, got several', { field: 'out' });
  const pooling = text('pooling');
  if (pooling !== 'avg' && pooling !== 'max') throw new UserError(`'${pooling}' is not avg or max`, { field: 'pooling' });
  const choice = <T extends string>(field: string): T => {
    const t = text(field)!;
    const allowed = JOB_OPTIONS.find((o) => o.field === field)!.choices!;
    if (!allowed.includes(t)) throw new UserError(`'${t}' is not one of ${allowed.join(', ')}`, { field });
    return t as T;
  };
  const resume = values.resume;
  if (resume !== undefined && typeof resume !== 'boolean' && !/^(true|false)$/.test(String(resume)))
    throw new UserError(`'${resume}' is not true or false`, { field: 'resume' });
  return {
    contents: required('content'),
    // 'a.jpg,b.jpg' is two styles unless a file of that very name exists.
    styles: required('style').flatMap((s) =>
      existsSync(s)
        ? [s]
        : s
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean),
    ),
    styleBlendWeights: optional('styleBlendWeights', (t) => t.split(',').map((w) => parseNumber(w, 'styleBlendWeights'))),
    styleScale: optional('styleScale', (t) => parseNumber(t, 'styleScale')),
    out: path.normalize(out[0]),
    size: parseSize(text('size')!),
    iterations: count('iterations'),
    adam: { ...d.adam, lr: num('lr') },
    loss: {
      contentLayers: parseLayerList(text('contentLayers')!, 'contentLayers'),
      styleLayers: parseLayerList(text('styleLayers')!, 'styleLayers'),
      alpha: num('alpha'),
      beta: num('beta'),
      tvWeight: num('tvWeight'),
    },
    pooling,
    init: text('init')!,
    noiseRatio: num('noiseRatio'),
    seed: count('seed', 0, MAX_SEED),
    printEvery: count('printEvery', 1),
    saveEvery: count('saveEvery'),
    checkpointEvery: count('checkpointEvery'),
    resume: resume === true || resume === 'true',
    optimizer: choice<'adam' | 'lbfgs'>('optimizer'),
    lbfgsHistory: count('lbfgsHistory', 1, 10000),
    preserveColors: choice<'none' | 'luminance' | 'histogram'>('preserveColors'),
    scales: optional('scales', parseScales),
    scaleIterations: optional('scaleIterations', (t) => t.split(',').map((n) => parseCount(n, 'scaleIterations'))),
    bitDepth: Number(choice('bitDepth')) as 8 | 16,
    iccProfile: choice<'srgb' | 'keep'>('iccProfile'),
    weights: text('weights'),
  };
}

/** `auto`, or longest sides `256,362` (a side may also be WxH). */
function parseScales(text: string): 'auto' | SizeSpec[] {
  if (text.trim().toLowerCase() === 'auto') return 'auto';
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new UserError("expected 'auto' or sizes such as 256,362", { field: 'scales' });
  return items.map((s) => parseSize(s, 'scales'));
}
