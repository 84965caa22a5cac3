/**
 * The weight cache: one safetensors file holding conv1_1 .. conv5_1 (all that
 * style transfer uses; about 52 MB of float32) as "conv1_1.kernel" (HWIO) and
 * "conv1_1.bias", with the preprocessing, the original file's SHA-256 and
 * format in the metadata. Any safetensors file with Keras-style or
 * torchvision-style names loads too (OIHW kernels are recognised by shape).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { PREPROCESSING, VGG19_LAYERS, type DefaultLayers, type Preprocessing, type WeightedLayer, type WeightSet } from '@nst/core';
import { MemoryBudget } from './budget.js';
import { FormatError, WeightsError, check, fail } from './errors.js';
import { openRegular, withFile } from './filebytes.js';
import { checkShape, gatherHWIO, layerShape, parseParamName, parseTorchName, STRIDES } from './layers.js';
import { checkPreprocessing } from './preprocessing.js';
import { completeConvs } from './tfjs.js';
import { hasMagic, registerFormat, type LoadedFile, type LoadOptions, type Probe } from './registry.js';
import { readHeader, readTensor, tensorToFloat32, writeSafetensors } from './safetensors.js';

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

/** The environment variable cacheDir() came from, if any (for messages). */
export function cacheDirVariable(): string | undefined {
  if (process.env.NST_CACHE_DIR) return 'NST_CACHE_DIR';
  if (process.env.XDG_CACHE_HOME) return 'XDG_CACHE_HOME';
  return undefined;
}

/** A WeightsError (WEIGHTS_CACHE_UNWRITABLE) naming the folder, and the variable it came from. */
function unwritable(dir: string, variable: string | undefined, reason: string, cause?: unknown): WeightsError {
  const from = variable ? ` (from ${variable})` : '';
  return new WeightsError(`cache folder ${dir}${from} ${reason}`, {
    reason: 'WEIGHTS_CACHE_UNWRITABLE',
    path: dir,
    entry: variable,
    cause,
  });
}

function errnoReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'EEXIST' || code === 'ENOTDIR') return 'is (or lies under) a file, not a folder';
  return `is not writable (${code ?? (e as Error)?.message ?? String(e)})`;
}

/** Creates the folder `dir` if needed; a file in its place or a folder that cannot be created is a user error naming it. */
export async function ensureCacheFolder(dir: string, variable: string | undefined): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    if (!(await stat(dir)).isDirectory()) throw unwritable(dir, variable, 'is a file, not a folder');
  } catch (e) {
    if (e instanceof WeightsError) throw e;
    throw unwritable(dir, variable, errnoReason(e), e);
  }
}

export function cachePath(): string {
  return join(cacheDir(), CACHE_FILE_NAME);
}

/**
 * NST_WEIGHTS when set, else the cache file when it exists, else undefined.
 * An NST_WEIGHTS naming nothing is a user error naming the variable: the
 * path alone would not tell a user where it came from.
 */
export async function resolveDefaultWeights(): Promise<string | undefined> {
  const named = process.env.NST_WEIGHTS;
  if (named) {
    const special = named === 'embedded' || named.startsWith('random:');
    if (!special && !existsSync(named))
      throw new WeightsError(`NST_WEIGHTS=${named}: no such file or folder (unset NST_WEIGHTS to use the installed weights)`, {
        reason: 'WEIGHTS_UNREADABLE',
        path: named,
        entry: 'NST_WEIGHTS',
      });
    return named;
  }
  const path = cachePath();
  return existsSync(path) ? path : undefined;
}

/** The layers of `set` the cache keeps: up to conv5_1. */
export function cachedLayers(set: WeightSet): WeightSet['layers'] {
  const last = VGG19_LAYERS.findIndex((l) => l.name === CACHE_LAST_LAYER);
  return set.layers.slice(0, last + 1);
}

/** Writes `set` (its layers up to conv5_1) to `path` (default: the cache), atomically. */
export async function writeCache(set: WeightSet, path = cachePath()): Promise<string> {
  const layers = cachedLayers(set);
  const variable = path === cachePath() ? cacheDirVariable() : undefined;
  await ensureCacheFolder(dirname(path), variable);
  const tensors = layers.flatMap((l) => [
    { name: `${l.name}.kernel`, shape: [3, 3, l.inChannels, l.outChannels], data: l.kernel },
    { name: `${l.name}.bias`, shape: [l.outChannels], data: l.bias },
  ]);
  try {
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
  } catch (e) {
    if (typeof (e as NodeJS.ErrnoException)?.code === 'string') throw unwritable(dirname(path), variable, errnoReason(e), e);
    throw e;
  }
  return path;
}

/**
 * Reads the header, then only the VGG-19 conv tensors (each shape checked
 * before its bytes are read), so a safetensors file of any size loads.
 */
export async function loadSafetensorsWeights(probe: Probe, options: LoadOptions): Promise<LoadedFile> {
  const partial = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
  let torchNames = false;
  const dtypes = new Set<string>();
  const metadata = await withFile(
    probe.path,
    async (file) => {
      const header = await readHeader(file);
      for (const [name, t] of header.entries) {
        const torch = parseTorchName(name);
        const param = parseParamName(name) ?? torch;
        if (!param) continue;
        torchNames ||= torch !== undefined;
        const { inChannels: I, outChannels: O } = layerShape(param.conv);
        const entry = partial.get(param.conv) ?? {};
        if (entry[param.kind]) fail(`${param.conv} ${param.kind} appears twice`);
        const oihw = param.kind === 'kernel' && t.shape[0] === O && t.shape[3] === 3;
        checkShape(param.conv, param.kind, t.shape, param.kind === 'bias' ? [O] : oihw ? [O, I, 3, 3] : [3, 3, I, O]);
        const tensor = await readTensor(file, header, name);
        dtypes.add(tensor.dtype);
        const values = tensorToFloat32(name, tensor, file.budget);
        if (param.kind === 'bias') entry.bias = values;
        else entry.kernel = oihw ? gatherHWIO(values, 0, STRIDES.oihw(I, O), I, O) : values;
        partial.set(param.conv, entry);
      }
      return header.metadata;
    },
    probe.budget,
  );
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
  return {
    convs: completeConvs(partial),
    preprocessing,
    sha256: metadata.source_sha256,
    details,
    ...(defaultLayers ? { defaultLayers } : {}),
  };
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
    check(
      Array.isArray(items) && items.length > 0 && items.length <= VGG19_LAYERS.length,
      `metadata "${DEFAULT_LAYERS_KEY}" needs a non-empty list ${key}`,
    );
    return items.map((item: { layer?: unknown; weight?: unknown }) => {
      check(
        VGG19_LAYERS.some((l) => l.name === item?.layer),
        `metadata "${DEFAULT_LAYERS_KEY}": ${key} names an unknown layer`,
      );
      check(
        typeof item.weight === 'number' && item.weight > 0 && Number.isFinite(item.weight),
        `metadata "${DEFAULT_LAYERS_KEY}": ${key} needs positive weights`,
      );
      return { layer: item.layer as string, weight: item.weight };
    });
  };
  return { contentLayers: list('contentLayers'), styleLayers: list('styleLayers') };
}

const PREPROCESSING_FIELD = '__metadata__.preprocessing';

/** A Preprocessing recorded as JSON, checked field by field. */
export function parsePreprocessing(json: string): Preprocessing {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    fail(`${PREPROCESSING_FIELD} is not valid JSON`, 'WEIGHTS_BAD_PREPROCESSING', PREPROCESSING_FIELD);
  }
  const p = checkPreprocessing(parsed, PREPROCESSING_FIELD);
  const known = Object.values(PREPROCESSING).find((k) => JSON.stringify(k) === JSON.stringify(p));
  return known ?? (p as Preprocessing);
}

/** SHA-256 of a (regular) file, streamed (the original files reach 550 MB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const { fh } = await openRegular(path);
  try {
    for await (const chunk of fh.createReadStream({ highWaterMark: 1 << 20, autoClose: false })) hash.update(chunk as Buffer);
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/**
 * What a cache file holds: the VGG-19 layers (conv1_1 onwards, in order)
 * whose kernels it names, and the source it records; no layers when it
 * cannot be read.
 */
async function cacheContents(path: string): Promise<{ layers: string[]; source?: string }> {
  try {
    const header = await withFile(path, (f) => readHeader(f), new MemoryBudget());
    const layers: string[] = [];
    for (const l of VGG19_LAYERS) {
      if (!header.entries.has(`${l.name}.kernel`) || !header.entries.has(`${l.name}.bias`)) break;
      layers.push(l.name);
    }
    return { layers, source: header.metadata.source };
  } catch (e) {
    if (e instanceof FormatError || typeof (e as NodeJS.ErrnoException)?.code === 'string') return { layers: [] };
    throw e;
  }
}

export interface CacheImport {
  /** The cache file written. */
  readonly path: string;
  /** The layers stored (the set's, up to conv5_1). */
  readonly layers: readonly string[];
  /** The layers the cache held before, if it held any. */
  readonly replaced: readonly string[];
}

/**
 * Stores `set` in the cache, unless that would replace a cache holding more
 * layers with fewer, or real weights with seeded random ones: either needs
 * `force` (a WeightsError WEIGHTS_CACHE_DOWNGRADE with field "force"
 * otherwise, for the caller to name its flag).
 */
export async function importToCache(set: WeightSet, options: { force?: boolean; path?: string } = {}): Promise<CacheImport> {
  const path = options.path ?? cachePath();
  const layers = cachedLayers(set).map((l) => l.name);
  const held = existsSync(path) ? await cacheContents(path) : { layers: [] };
  const refuse = (why: string) =>
    new WeightsError(`${path} holds ${why}: refusing to replace the cache`, { reason: 'WEIGHTS_CACHE_DOWNGRADE', path, field: 'force' });
  const span = (names: readonly string[]) => `${names.length} layers (${names[0]} .. ${names.at(-1)})`;
  if (!options.force && held.layers.length > layers.length)
    throw refuse(`${span(held.layers)}; ${set.source} would store only ${span(layers)}, fewer layers`);
  const isRandom = (source: string | undefined) => source !== undefined && /^random:/.test(source);
  if (!options.force && held.layers.length > 0 && isRandom(set.source) && !isRandom(held.source))
    throw refuse(
      `weights from ${held.source ?? 'an unknown source'}; ${set.source} is seeded random weights (for tests, not a stylisation)`,
    );
  await writeCache(set, path);
  return { path, layers, replaced: held.layers };
}

registerFormat({
  name: 'safetensors',
  description: 'safetensors',
  // An 8-byte little-endian header length, then the JSON header's "{".
  detect: (p) => !p.isDirectory && p.head.length >= 9 && hasMagic(p.head, '{', 8) && p.head[6] === 0 && p.head[7] === 0,
  load: loadSafetensorsWeights,
});
