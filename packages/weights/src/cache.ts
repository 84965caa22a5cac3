/**
 * The weight cache: one safetensors file holding conv1_1 .. conv5_1 (all that
 * style transfer uses; about 52 MB of float32) as "conv1_1.kernel" (HWIO) and
 * "conv1_1.bias", with the preprocessing, the original file's SHA-256 and
 * format in the metadata. Any safetensors file with Keras-style or
 * torchvision-style names loads too (OIHW kernels are recognised by shape).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { PREPROCESSING, VGG19_LAYERS, type DefaultLayers, type Preprocessing, type WeightedLayer, type WeightSet } from '@nst/core';
import { check, fail } from './errors.js';
import { checkShape, gatherHWIO, layerShape, parseParamName, parseTorchName, STRIDES } from './layers.js';
import { completeConvs } from './tfjs.js';
import { hasMagic, registerFormat, type LoadedFile, type LoadOptions, type Probe } from './registry.js';
import { parseSafetensors, tensorToFloat32, writeSafetensors } from './safetensors.js';

export const CACHE_FORMAT = 'nst-vgg19-cache';
export const CACHE_FILE_NAME = 'vgg19-conv1_1-conv5_1.safetensors';
/** The cache keeps the layers up to conv5_1, the deepest one style transfer reads. */
export const CACHE_LAST_LAYER = 'conv5_1';

/** $NST_CACHE_DIR, else $XDG_CACHE_HOME/nst, else ~/.cache/nst. */
export function cacheDir(): string {
  if (process.env.NST_CACHE_DIR) return process.env.NST_CACHE_DIR;
  if (process.env.XDG_CACHE_HOME) return join(process.env.XDG_CACHE_HOME, 'nst');
  return join(homedir(), '.cache', 'nst');
}

export function cachePath(): string {
  return join(cacheDir(), CACHE_FILE_NAME);
}

/** NST_WEIGHTS when set, else the cache file when it exists, else undefined. */
export async function resolveDefaultWeights(): Promise<string | undefined> {
  if (process.env.NST_WEIGHTS) return process.env.NST_WEIGHTS;
  const path = cachePath();
  return existsSync(path) ? path : undefined;
}

/** Writes `set` (its layers up to conv5_1) to `path` (default: the cache), atomically. */
export async function writeCache(set: WeightSet, path = cachePath()): Promise<string> {
  const last = VGG19_LAYERS.findIndex((l) => l.name === CACHE_LAST_LAYER);
  const layers = set.layers.slice(0, last + 1);
  await mkdir(join(path, '..'), { recursive: true });
  const tensors = layers.flatMap((l) => [
    { name: `${l.name}.kernel`, shape: [3, 3, l.inChannels, l.outChannels], data: l.kernel },
    { name: `${l.name}.bias`, shape: [l.outChannels], data: l.bias },
  ]);
  await writeSafetensors(path, tensors, {
    format: CACHE_FORMAT,
    version: '1',
    preprocessing: JSON.stringify(set.preprocessing),
    // Where the weights came from: an absolute path, a URL or random:SEED.
    source: /^[a-z]+:/.test(set.source) || isAbsolute(set.source) ? set.source : resolve(set.source),
    source_format: set.format,
    ...(set.sha256 ? { source_sha256: set.sha256 } : {}),
    layers: layers.map((l) => l.name).join(','),
    ...(set.defaultLayers ? { [DEFAULT_LAYERS_KEY]: JSON.stringify(set.defaultLayers) } : {}),
  });
  return path;
}

export async function loadSafetensorsWeights(probe: Probe, options: LoadOptions): Promise<LoadedFile> {
  const { tensors, metadata } = parseSafetensors(await readFile(probe.path));
  const partial = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
  let torchNames = false;
  const dtypes = new Set<string>();
  for (const [name, t] of tensors) {
    const torch = parseTorchName(name);
    const param = parseParamName(name) ?? torch;
    if (!param) continue;
    torchNames ||= torch !== undefined;
    const { inChannels: I, outChannels: O } = layerShape(param.conv);
    const values = tensorToFloat32(name, t);
    dtypes.add(t.dtype);
    const entry = partial.get(param.conv) ?? {};
    if (entry[param.kind]) fail(`${param.conv} ${param.kind} appears twice`);
    if (param.kind === 'bias') {
      checkShape(param.conv, 'bias', t.shape, [O]);
      entry.bias = values;
    } else if (t.shape[0] === O && t.shape[3] === 3) {
      checkShape(param.conv, 'kernel', t.shape, [O, I, 3, 3]);
      entry.kernel = gatherHWIO(values, 0, STRIDES.oihw(I, O), I, O);
    } else {
      checkShape(param.conv, 'kernel', t.shape, [3, 3, I, O]);
      entry.kernel = values;
    }
    partial.set(param.conv, entry);
  }
  const isCache = metadata.format === CACHE_FORMAT;
  let preprocessing: Preprocessing;
  if (metadata.preprocessing) preprocessing = parsePreprocessing(metadata.preprocessing);
  else {
    // No record: Keras names mean the Caffe-derived Keras set; torchvision names most likely torchvision's.
    preprocessing = torchNames ? PREPROCESSING.torchvision : PREPROCESSING.caffeBgr;
    if (options.verbose) (options.log ?? console.error)(`${probe.path}: no preprocessing recorded; assuming ${preprocessing.name}`);
  }
  const details: Record<string, string> = {};
  if (isCache) {
    details['cache of'] = metadata.source ?? 'unknown';
    details['original format'] = metadata.source_format ?? 'unknown';
  }
  if (metadata.credit) details.credit = metadata.credit;
  if (metadata.license) details.licence = metadata.license;
  if (!(dtypes.size === 1 && dtypes.has('F32'))) details['stored as'] = [...dtypes].join(', ');
  const defaultLayers = metadata[DEFAULT_LAYERS_KEY] === undefined ? undefined : parseDefaultLayers(metadata[DEFAULT_LAYERS_KEY]);
  return { convs: completeConvs(partial), preprocessing, sha256: metadata.source_sha256, details, ...(defaultLayers ? { defaultLayers } : {}) };
}

/** The metadata entry holding a set's own loss layers (WeightSet.defaultLayers) as JSON. */
export const DEFAULT_LAYERS_KEY = 'default_layers';

/** WeightSet.defaultLayers recorded as JSON: {"contentLayers": [{"layer", "weight"}...], "styleLayers": [...]}, checked. */
export function parseDefaultLayers(json: string): DefaultLayers {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(json) as Record<string, unknown>;
  } catch {
    fail(`metadata "${DEFAULT_LAYERS_KEY}" is not valid JSON`);
  }
  const list = (key: string): WeightedLayer[] => {
    const items = v?.[key];
    check(Array.isArray(items) && items.length > 0 && items.length <= VGG19_LAYERS.length, `metadata "${DEFAULT_LAYERS_KEY}" needs a non-empty list ${key}`);
    return items.map((item: { layer?: unknown; weight?: unknown }) => {
      check(VGG19_LAYERS.some((l) => l.name === item?.layer), `metadata "${DEFAULT_LAYERS_KEY}": ${key} names an unknown layer`);
      check(typeof item.weight === 'number' && item.weight > 0 && Number.isFinite(item.weight), `metadata "${DEFAULT_LAYERS_KEY}": ${key} needs positive weights`);
      return { layer: item.layer as string, weight: item.weight };
    });
  };
  return { contentLayers: list('contentLayers'), styleLayers: list('styleLayers') };
}

/** A Preprocessing recorded as JSON, checked field by field. */
export function parsePreprocessing(json: string): Preprocessing {
  let p: Partial<Preprocessing>;
  try {
    p = JSON.parse(json) as Partial<Preprocessing>;
  } catch {
    fail('metadata "preprocessing" is not valid JSON');
  }
  const triple = (v: unknown, positive: boolean) =>
    Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
  check(p && typeof p.name === 'string', 'metadata "preprocessing" has no name');
  check(p.channelOrder === 'rgb' || p.channelOrder === 'bgr', 'metadata "preprocessing" has no channelOrder rgb|bgr');
  check(typeof p.scale === 'number' && p.scale > 0 && Number.isFinite(p.scale), 'metadata "preprocessing" has no positive scale');
  check(triple(p.mean, false) && triple(p.std, true), 'metadata "preprocessing" needs mean and std of 3 numbers');
  const known = Object.values(PREPROCESSING).find((k) => JSON.stringify(k) === JSON.stringify(p));
  return known ?? (p as Preprocessing);
}

/** SHA-256 of a file, streamed (the original files reach 550 MB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

registerFormat({
  name: 'safetensors',
  description: 'safetensors',
  // An 8-byte little-endian header length, then the JSON header's "{".
  detect: (p) => !p.isDirectory && p.head.length >= 9 && hasMagic(p.head, '{', 8) && p.head[6] === 0 && p.head[7] === 0,
  load: loadSafetensorsWeights,
});
