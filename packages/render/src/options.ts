import { existsSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_LOSS, UserError, type WeightedLayer } from '@nst/core';
import { MAX_SEED, RENDER_DEFAULTS, type RenderConfig } from './job.js';
import { parseCount, parseLayerList, parseNumber, parseSize } from './parse.js';

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
  { field: 'content', short: 'c', value: 'file', required: true, repeatable: true, description: 'content image (repeat for a batch: out is then a folder)' },
  { field: 'style', short: 's', value: 'file', required: true, repeatable: true, description: 'style image (repeat, or separate with commas, to blend several)' },
  { field: 'styleBlendWeights', value: 'w,...', description: 'blend weights of the style images (default: equal)' },
  { field: 'styleScale', value: 'x', description: "resize style images to x times the output's longest side (default: the output size)" },
  { field: 'out', short: 'o', value: 'file', required: true, description: 'output image (.png, .jpg, .jpeg, .webp, .tif, .tiff, .avif); intermediate saves go to <stem>_<iteration><ext>' },
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
  { field: 'checkpointEvery', value: 'n', default: String(d.checkpointEvery), description: 'write a resumable checkpoint <out>.ckpt every n iterations (0: only on interrupt)' },
  { field: 'resume', description: 'continue from <out>.ckpt when it exists' },
  { field: 'weights', short: 'w', value: 'path|random:SEED', description: 'VGG-19 weights (default: $NST_WEIGHTS, else the installed set)' },
];

/** Option values as a front end received them: text (CLI, CSV, form fields), numbers and booleans (JSON). */
export type JobOptionValues = Readonly<Record<string, string | number | boolean | readonly (string | number)[] | undefined>>;

/**
 * Parses a job's option values (keys: the fields of JOB_OPTIONS, camelCase)
 * into a RenderConfig, applying the defaults. Unknown keys are an error.
 */
export function jobFromOptions(values: JobOptionValues): RenderConfig & { readonly weights?: string } {
  const known = new Set(JOB_OPTIONS.map((o) => o.field));
  for (const key of Object.keys(values))
    if (values[key] !== undefined && !known.has(key)) throw new UserError(`'${key}' is not a render option`, { field: key });
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
  const resume = values.resume;
  if (resume !== undefined && typeof resume !== 'boolean' && !/^(true|false)$/.test(String(resume)))
    throw new UserError(`'${resume}' is not true or false`, { field: 'resume' });
  return {
    contents: required('content'),
    // 'a.jpg,b.jpg' is two styles unless a file of that very name exists.
    styles: required('style').flatMap((s) => (existsSync(s) ? [s] : s.split(',').map((x) => x.trim()).filter(Boolean))),
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
    weights: text('weights'),
  };
}
