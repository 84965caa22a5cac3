/**
 * loadWeights: detects a file's format by content, runs its loader, orders
 * and validates the layers, and turns every problem into a one-line
 * UserError naming the file.
 */
import { isUserError, validateWeightSet, type WeightSet } from '@nst/core';
import { EMBEDDED_SHA256, EMBEDDED_SOURCE, verifiedEmbeddedPath } from './embedded.js';
import { FormatError, WeightsError, oneLine } from './errors.js';
import { orderLayers } from './layers.js';
import { parseRandomSource, randomWeights } from './random.js';
import { detectFormat, probePath, registeredFormats, type LoadOptions, type Probe } from './registry.js';
// Each format registers itself on import; the order is the detection order.
import './cache.js';
import './tfjs.js';
import './keras-h5.js';
import './pth.js';
import './matconvnet.js';

export interface LoadedWeights {
  readonly set: WeightSet;
  /** Extra facts for `nst weights info`. */
  readonly details: Record<string, string>;
  readonly loadMs: number;
}

/** Loads `source` (a file or folder in any supported format, `embedded`, or random:SEED) as a validated WeightSet. */
export async function loadWeights(source: string, options: LoadOptions = {}): Promise<WeightSet> {
  return (await loadWeightsDetailed(source, options)).set;
}

export async function loadWeightsDetailed(source: string, options: LoadOptions = {}): Promise<LoadedWeights> {
  const start = performance.now();
  const seed = parseRandomSource(source);
  if (seed !== undefined) return { set: randomWeights(seed), details: {}, loadMs: performance.now() - start };
  if (source === EMBEDDED_SOURCE) {
    const path = await verifiedEmbeddedPath();
    const { set, details } = await loadAs('safetensors', await probePath(path), options, source);
    return { set: { ...set, sha256: EMBEDDED_SHA256 }, details: { file: path, ...details }, loadMs: performance.now() - start };
  }

  const probe = await probePath(source).catch((e: NodeJS.ErrnoException) => {
    if (e instanceof FormatError) throw asUserError(e, source, source);
    const reason = e.code === 'ENOENT' ? 'no such file or folder' : `cannot be read (${e.code ?? e.message})`;
    throw new WeightsError(`${source}: ${reason}`, { reason: 'WEIGHTS_UNREADABLE', path: source, cause: e });
  });
  const format = detectFormat(probe);
  if (!format)
    throw new WeightsError(
      `${source}: not a recognised VGG-19 weight file (supported: ${registeredFormats()
        .map((f) => f.description)
        .join('; ')})`,
      {
        reason: 'WEIGHTS_UNKNOWN_FORMAT',
        path: source,
      },
    );
  const set = await loadAs(format.name, probe, options, source);
  const loadMs = performance.now() - start;
  if (options.verbose)
    (options.log ?? console.error)(
      `weights: ${source} (${format.name}, ${set.set.layers.length} layers conv1_1..${set.set.layers.at(-1)!.name}, ` +
        `${set.set.preprocessing.name}) loaded in ${loadMs.toFixed(0)} ms`,
    );
  return { ...set, loadMs };
}

async function loadAs(formatName: string, probe: Probe, options: LoadOptions, source: string): Promise<Omit<LoadedWeights, 'loadMs'>> {
  const format = registeredFormats().find((f) => f.name === formatName)!;
  try {
    const loaded = await format.load(probe, options);
    const set: WeightSet = {
      layers: orderLayers(loaded.convs),
      preprocessing: options.preprocessing ?? loaded.preprocessing,
      source,
      format: format.name,
      ...(loaded.sha256 ? { sha256: loaded.sha256 } : {}),
      ...(loaded.defaultLayers ? { defaultLayers: loaded.defaultLayers } : {}),
    };
    checkVgg(set, source);
    return { set, details: loaded.details ?? {} };
  } catch (e) {
    throw asUserError(e, `${source}: ${format.description}`, source);
  }
}

/**
 * Content problems and file-system errors become one-line WeightsErrors naming
 * the file (with the code and the field of the FormatError); bugs stay bugs.
 */
function asUserError(e: unknown, prefix: string, path: string): unknown {
  if (isUserError(e)) return e;
  if (e instanceof FormatError)
    return new WeightsError(oneLine(`${prefix}: ${e.message}`), { reason: e.code, path, entry: e.field, cause: e });
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code))
    return new WeightsError(`${prefix}: cannot be read (${code})`, { reason: 'WEIGHTS_UNREADABLE', path, cause: e });
  return e;
}

/** core's validateWeightSet, whose plain Errors (already naming the source) become WeightsErrors. */
function checkVgg(set: WeightSet, source: string): void {
  try {
    validateWeightSet(set);
  } catch (e) {
    throw new WeightsError((e as Error).message, { reason: 'WEIGHTS_CORRUPT', path: source, cause: e });
  }
}
