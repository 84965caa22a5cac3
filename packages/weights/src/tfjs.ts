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
/** Shards of one group: a full VGG-19 in 4 MB shards has 137; each is opened twice. */
const MAX_SHARDS = 10_000;
const STORED_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

export async function loadTfjs(probe: Probe): Promise<LoadedFile> {
  const jsonPath = probe.isDirectory ? join(probe.path, 'model.json') : probe.path;
  const json = await openShard(jsonPath, 'model.json', probe.budget, () => fail(`no model.json in this folder`));
  let jsonBytes: Buffer;
  try {
    check(
      json.size <= MAX_MODEL_JSON_BYTES,
      `model.json is ${json.size} bytes, too large for a model description`,
      'WEIGHTS_TOO_LARGE',
      'model.json',
    );
    jsonBytes = await json.read(0, json.size, 'model.json');
  } finally {
    await json.close();
  }
  const hash = createHash('sha256').update(jsonBytes);
  const groups = parseManifest(jsonBytes);

  const convs = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
  const seen = new Set<string>();
  for (const [g, group] of groups.entries()) {
    // Where each VGG weight lies in the group's bytes (its shards concatenated), its shape checked before any read.
    const slices: Array<{ w: ManifestWeight; conv: string; kind: 'kernel' | 'bias'; begin: number; end: number }> = [];
    let offset = 0;
    for (const w of group.weights) {
      const size = storedBytes(w);
      const param = parseParamName(w.name);
      if (param) {
        check(!seen.has(`${param.conv}.${param.kind}`), `weight ${w.name} appears twice`);
        seen.add(`${param.conv}.${param.kind}`);
        const { inChannels, outChannels } = layerShape(param.conv);
        checkShape(param.conv, param.kind, w.shape, param.kind === 'kernel' ? [3, 3, inChannels, outChannels] : [outChannels]);
        slices.push({ w, ...param, begin: offset, end: offset + size });
      }
      offset += size;
    }
    if (slices.length === 0) continue;
    const bytes = await readSlices(dirname(jsonPath), group, g, offset, slices, hash, probe.budget);
    slices.forEach((sl, j) => {
      const entry = convs.get(sl.conv) ?? {};
      entry[sl.kind] = decode(sl.w, bytes[j]);
      convs.set(sl.conv, entry);
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
    check(
      Array.isArray(paths) && paths.length > 0 && paths.every((p) => typeof p === 'string'),
      `weightsManifest group ${g + 1} has no list of shard paths`,
    );
    check(
      paths.length <= MAX_SHARDS,
      `weightsManifest group ${g + 1} lists ${paths.length} shards, more than ${MAX_SHARDS}`,
      'WEIGHTS_TOO_LARGE',
      `weightsManifest[${g}].paths`,
    );
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
  check(
    Number.isSafeInteger(count) && count <= 2 ** 40,
    `weight ${w.name} has an implausible shape [${w.shape.join(', ')}]`,
    'WEIGHTS_TOO_LARGE',
    w.name,
  );
  return count * STORED_BYTES[w.quantization?.dtype ?? w.dtype];
}

/** One file of the model (model.json or a shard), refused unless it is a regular file. */
async function openShard(path: string, what: string, budget: MemoryBudget, missing: () => never): Promise<FileBytes> {
  try {
    return await FileBytes.open(path, budget, what);
  } catch (e) {
    if (e instanceof FormatError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') missing();
    return fail(`${what} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'WEIGHTS_UNREADABLE', what);
  }
}

/**
 * The bytes [begin, end) of each slice of the group's shards concatenated,
 * which must hold the `declared` bytes of its weights. Every shard is
 * streamed through the hash (which covers model.json and every shard read,
 * in manifest order) but only the slices are kept: a full model's 500 MB of
 * fully connected weights cost no memory.
 */
async function readSlices(
  folder: string,
  group: ManifestGroup,
  g: number,
  declared: number,
  slices: ReadonlyArray<{ w: ManifestWeight; begin: number; end: number }>,
  hash: ReturnType<typeof createHash>,
  budget: MemoryBudget,
): Promise<Buffer[]> {
  // One shard open at a time: sizes first (the declared bytes must fit), then the bytes.
  const what = (p: string) => `shard ${p} of group ${g + 1}`;
  const open = (p: string) =>
    openShard(join(folder, p), what(p), budget, () => fail(`${what(p)} cannot be read (ENOENT)`, 'WEIGHTS_UNREADABLE', what(p)));
  let total = 0;
  for (const p of group.paths) {
    const shard = await open(p);
    total += shard.size;
    await shard.close();
  }
  check(
    declared <= total,
    `group ${g + 1}'s shards hold ${total} bytes, fewer than the ${declared} its weights need`,
    'WEIGHTS_CORRUPT',
    `weightsManifest[${g}]`,
  );
  const out = slices.map((sl) => {
    budget.take(sl.end - sl.begin, `weight ${sl.w.name}`);
    return Buffer.alloc(sl.end - sl.begin);
  });
  let pos = 0;
  for (const p of group.paths) {
    const shard = await open(p);
    try {
      for await (const chunk of shard.stream(0, shard.size) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        slices.forEach((sl, j) => {
          const lo = Math.max(sl.begin, pos);
          const hi = Math.min(sl.end, pos + chunk.length);
          if (lo < hi) chunk.copy(out[j], lo - sl.begin, lo - pos, hi - pos);
        });
        pos += chunk.length;
      }
    } finally {
      await shard.close();
    }
  }
  return out;
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
