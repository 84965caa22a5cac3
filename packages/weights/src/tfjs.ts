/**
 * TensorFlow.js layers models: model.json (topology + weightsManifest) and
 * binary shards. Each manifest group lists its shard files, whose bytes
 * concatenated hold the group's weights one after another, each prod(shape)
 * values of its dtype, or of its quantization dtype (uint8/uint16: value =
 * min + scale * q; float16: IEEE half), which are dequantised here.
 * Keras-converted sets keep Keras names (block1_conv1/kernel) and HWIO kernels.
 */
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, join } from 'node:path';
import { PREPROCESSING } from '@nst/core';
import type { MemoryBudget } from './budget.js';
import { halfToFloat, float32View } from './bytes.js';
import { check, checkInt, fail, FormatError } from './errors.js';
import { FileBytes } from './filebytes.js';
import { checkShape, layerShape, parseParamName, type RawConv } from './layers.js';
import { registerFormat, type LoadedFile, type Probe } from './registry.js';

interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}
interface ManifestGroup {
  paths: string[];
  weights: ManifestWeight[];
}

const MAX_MODEL_JSON_BYTES = 64 << 20;
const STORED_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

export async function loadTfjs(probe: Probe): Promise<LoadedFile> {
  const jsonPath = probe.isDirectory ? join(probe.path, 'model.json') : probe.path;
  const jsonBytes = await readShard(jsonPath, 'model.json', probe.budget, MAX_MODEL_JSON_BYTES, () => fail(`no model.json in this folder`));
  const hash = createHash('sha256').update(jsonBytes);
  const groups = parseManifest(jsonBytes);

  const convs = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
  for (const [g, group] of groups.entries()) {
    const wanted = group.weights.map((w) => parseParamName(w.name));
    if (wanted.every((p) => p === undefined)) continue;
    const data = await readGroup(dirname(jsonPath), group, g, hash, probe.budget);
    let offset = 0;
    group.weights.forEach((w, k) => {
      const size = storedBytes(w);
      const param = wanted[k];
      if (param) {
        check(offset + size <= data.length, () =>
          `weight ${w.name} needs bytes ${offset}..${offset + size} but group ${g + 1}'s shards hold ${data.length}`);
        const entry = convs.get(param.conv) ?? {};
        if (entry[param.kind]) fail(`weight ${w.name} appears twice`);
        const { inChannels, outChannels } = layerShape(param.conv);
        checkShape(param.conv, param.kind, w.shape, param.kind === 'kernel' ? [3, 3, inChannels, outChannels] : [outChannels]);
        entry[param.kind] = decode(w, data.subarray(offset, offset + size));
        convs.set(param.conv, entry);
      }
      offset += size;
    });
  }
  return { convs: completeConvs(convs), preprocessing: PREPROCESSING.caffeBgr, sha256: hash.digest('hex') };
}

/** Every conv must have both its kernel and its bias. */
export function completeConvs(partial: Map<string, { kernel?: Float32Array; bias?: Float32Array }>): Map<string, RawConv> {
  const out = new Map<string, RawConv>();
  for (const [name, { kernel, bias }] of partial) {
    if (!kernel) fail(`${name} has a bias but no kernel`);
    if (!bias) fail(`${name} has a kernel but no bias`);
    out.set(name, { kernel, bias });
  }
  return out;
}

function parseManifest(jsonBytes: Uint8Array): ManifestGroup[] {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(jsonBytes).toString('utf8'));
  } catch (e) {
    fail(`model.json is not valid JSON (${(e as Error).message})`);
  }
  const manifest = (json as { weightsManifest?: unknown } | null)?.weightsManifest;
  check(Array.isArray(manifest), 'model.json has no weightsManifest list: not a TensorFlow.js model');
  return manifest.map((group: unknown, g: number) => {
    const { paths, weights } = (group ?? {}) as Partial<ManifestGroup>;
    check(Array.isArray(paths) && paths.length > 0 && paths.every((p) => typeof p === 'string'), `weightsManifest group ${g + 1} has no list of shard paths`);
    check(Array.isArray(weights), `weightsManifest group ${g + 1} has no list of weights`);
    for (const p of paths) check(!isAbsolute(p) && !p.split(/[\\/]/).includes('..'), `shard path "${p}" leaves the model's folder`);
    weights.forEach((w) => checkWeightEntry(w, g));
    return { paths, weights };
  });
}

function checkWeightEntry(w: ManifestWeight, g: number): void {
  check(w && typeof w.name === 'string', `weightsManifest group ${g + 1} has a weight without a name`);
  check(Array.isArray(w.shape) && w.shape.length <= 8, `weight ${w.name} has no valid shape`);
  w.shape.forEach((d) => checkInt(d, `weight ${w.name} dimension`, 0, 1 << 30));
  const stored = w.quantization?.dtype ?? w.dtype;
  check(typeof stored === 'string' && stored in STORED_BYTES, `weight ${w.name} has unsupported dtype ${String(stored)}`);
  if (w.quantization && w.quantization.dtype !== 'float16') {
    const { scale, min } = w.quantization;
    check(Number.isFinite(scale) && Number.isFinite(min), `weight ${w.name} is quantised without a finite scale and min`);
  }
}

function storedBytes(w: ManifestWeight): number {
  const count = w.shape.reduce((a, b) => a * b, 1);
  check(Number.isSafeInteger(count) && count <= 2 ** 40, `weight ${w.name} has an implausible shape [${w.shape.join(', ')}]`, 'WEIGHTS_TOO_LARGE', w.name);
  return count * STORED_BYTES[w.quantization?.dtype ?? w.dtype];
}

/**
 * The whole of one file of the model (model.json or a shard): refused unless
 * it is a regular file, at most `max` bytes, and within the budget.
 */
async function readShard(path: string, what: string, budget: MemoryBudget, max: number, missing: () => never): Promise<Buffer> {
  let file: FileBytes;
  try {
    file = await FileBytes.open(path, budget, what);
  } catch (e) {
    if (e instanceof FormatError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') missing();
    fail(`${what} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'WEIGHTS_UNREADABLE', what);
  }
  try {
    check(file.size <= max, `${what} is ${file.size} bytes, more than the ${max} it may hold`, 'WEIGHTS_TOO_LARGE', what);
    return await file.read(0, file.size, what);
  } finally {
    await file.close();
  }
}

/**
 * The group's shards concatenated; a single shard is used as read (no copy).
 * The weights the manifest declares must fit in the shards' bytes (checked
 * again per weight as it is decoded).
 */
async function readGroup(folder: string, group: ManifestGroup, g: number, hash: ReturnType<typeof createHash>, budget: MemoryBudget): Promise<Uint8Array> {
  const declared = group.weights.reduce((sum, w) => sum + storedBytes(w), 0);
  const parts: Buffer[] = [];
  for (const p of group.paths) {
    const what = `shard ${p} of group ${g + 1}`;
    const bytes = await readShard(join(folder, p), what, budget, budget.limit, () => fail(`${what} cannot be read (ENOENT)`, 'WEIGHTS_UNREADABLE', what));
    hash.update(bytes);
    parts.push(bytes);
  }
  const total = parts.reduce((sum, b) => sum + b.length, 0);
  check(declared <= total, `group ${g + 1}'s shards hold ${total} bytes, fewer than the ${declared} its weights need`, 'WEIGHTS_CORRUPT', `weightsManifest[${g}]`);
  if (parts.length === 1) return parts[0];
  budget.take(total, `group ${g + 1}'s shards joined`);
  return Buffer.concat(parts);
}

function decode(w: ManifestWeight, bytes: Uint8Array): Float32Array {
  const q = w.quantization;
  if (!q) {
    check(w.dtype === 'float32', `weight ${w.name} is ${w.dtype}, expected float32`);
    return float32View(bytes);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / STORED_BYTES[q.dtype];
  const out = new Float32Array(n);
  if (q.dtype === 'float16') for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  else if (q.dtype === 'uint8') for (let i = 0; i < n; i++) out[i] = q.min! + q.scale! * bytes[i];
  else if (q.dtype === 'uint16') for (let i = 0; i < n; i++) out[i] = q.min! + q.scale! * view.getUint16(2 * i, true);
  else fail(`weight ${w.name} has unsupported quantization dtype ${q.dtype}`);
  return out;
}

registerFormat({
  name: 'tfjs-layers',
  description: 'TensorFlow.js layers model (model.json + shards)',
  detect: (p) => p.isDirectory || /^\s*\{/.test(Buffer.from(p.head.subarray(0, 64)).toString('latin1')),
  load: (p) => loadTfjs(p),
});
