/**
 * Keras HDF5 weight files (vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5
 * and every file Keras' save_weights or model.save wrote), read with h5wasm
 * (the HDF5 C library compiled to WebAssembly, reading the host file through
 * NODERAWFS), the way Keras' own loader (load_weights_from_hdf5_group) reads
 * them: the root attribute layer_names lists the layers; each layer group's
 * attribute weight_names lists its weights in order, kernel then bias, each
 * the path of a dataset inside the group. That covers every generation:
 *  - Keras 1 (the release files): block1_conv1/block1_conv1_W_1:0 and
 *    block1_conv1/block1_conv1_b_1:0;
 *  - Keras 2: block1_conv1/block1_conv1/kernel:0 and .../bias:0;
 *  - model.save: the same under /model_weights;
 *  - lists past HDF5's 64 KB header limit, split into layer_names0, layer_names1 ...
 * Only where a file has no such attributes are datasets matched by name
 * (kernel:0, bias:0, <layer>_W[_1][:0], <layer>_b[_1][:0]). Kernels are HWIO
 * (3, 3, in, out). Layers that are not VGG convolutions (the input, the pools,
 * fc1, fc2, predictions of the "with top" file) are skipped unread.
 *
 * h5wasm runs in a worker thread: on some corrupt files the C library calls
 * abort(), which leaves that WebAssembly instance unusable (later calls
 * hang), and a library stuck in a loop cannot be interrupted from the same
 * thread. The worker is reused from file to file (starting one costs ~0.2 s)
 * but replaced after an abort, a death or a request that takes too long.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PREPROCESSING } from '@nst/core';
import { check, fail } from './errors.js';
import { canonicalConvName, checkShape, layerShape, parseParamName } from './layers.js';
import { completeConvs } from './tfjs.js';
import { hasMagic, registerFormat, type LoadedFile, type Probe } from './registry.js';
import { sha256File } from './cache.js';

/** HDF5's signature sits at byte 0, or after a user block of 512, 1024, 2048 ... bytes. */
export function hasHdf5Signature(head: Uint8Array): boolean {
  const sig = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
  return [0, 512, 1024, 2048].some((o) => hasMagic(head, sig, o));
}

/** h5wasm's names of little- and big-endian float32 and float64. */
const FLOAT_DTYPES = new Set(['<f', '>f', '<d', '>d']);

/** Seconds one HDF5 request may take before the file is declared unreadable. */
const REQUEST_TIMEOUT_S = 20;

interface DatasetInfo {
  path: string;
  shape: number[] | null;
  dtype: string;
}

/** What the worker says is at a path. */
type NodeInfo = { kind: 'group' } | ({ kind: 'dataset' } & DatasetInfo) | { kind: 'missing' | 'other' };

type Kind = 'kernel' | 'bias';
/** Where a convolution's kernel and bias are. */
type WeightPaths = Partial<Record<Kind, string>>;

export async function loadKerasH5(probe: Probe): Promise<LoadedFile> {
  const h5 = (shared ??= new H5Worker());
  try {
    await h5.request({ op: 'open', path: probe.path }, 'open it');
    const partial = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
    for (const [conv, paths] of await locateWeights(h5)) {
      const entry: { kernel?: Float32Array; bias?: Float32Array } = {};
      for (const kind of ['kernel', 'bias'] as const) if (paths[kind]) entry[kind] = await readWeight(h5, conv, kind, paths[kind]);
      partial.set(conv, entry);
    }
    return { convs: completeConvs(partial), preprocessing: PREPROCESSING.caffeBgr, sha256: await sha256File(probe.path) };
  } finally {
    await h5.request({ op: 'close' }, 'close it').catch(() => undefined);
    if (h5.broken) {
      if (shared === h5) shared = undefined;
      await h5.terminate();
    }
  }
}

/**
 * The datasets of each VGG convolution: by layer_names and weight_names where
 * the file has them (as Keras reads it), else by the datasets' names.
 */
async function locateWeights(h5: H5Worker): Promise<Map<string, WeightPaths>> {
  const root = await weightsRoot(h5);
  const layers = await listAttribute(h5, root, 'layer_names');
  if (!layers) return byName(await h5.request<DatasetInfo[]>({ op: 'list', path: root }, 'list its contents'));
  const found = new Map<string, WeightPaths>();
  for (const layer of layers) {
    const conv = canonicalConvName(layer);
    if (!conv) continue; // the input, the pools, the classifier
    const group = `${root === '/' ? '' : root}/${layer}`;
    const names = await listAttribute(h5, group, 'weight_names');
    let paths: WeightPaths | undefined;
    if (names === undefined) paths = byName(await h5.request<DatasetInfo[]>({ op: 'list', path: group }, `list ${group}`)).get(conv);
    else if (names.length > 0) {
      check(
        names.length === 2,
        () => `${group} lists ${names.length} weights (${names.join(', ')}); a convolution has a kernel and a bias`,
        'WEIGHTS_CORRUPT',
        `${group}/weight_names`,
      );
      paths = { kernel: `${group}/${names[0]}`, bias: `${group}/${names[1]}` };
    }
    if (!paths) continue;
    check(!found.has(conv), `${conv} appears twice in layer_names`);
    found.set(conv, paths);
  }
  return found;
}

/** As Keras: the root, unless it lists no layers and a model.save file keeps them under /model_weights. */
async function weightsRoot(h5: H5Worker): Promise<string> {
  const attributes = await h5.request<string[]>({ op: 'attributes', path: '/' }, 'list the attributes of /');
  if (attributes.some((a) => /^layer_names\d*$/.test(a))) return '/';
  const wrapped = await h5.request<NodeInfo>({ op: 'node', path: '/model_weights' }, 'look for /model_weights');
  return wrapped.kind === 'group' ? '/model_weights' : '/';
}

/**
 * Keras' load_attributes_from_hdf5_group: the list attribute `name`, or its
 * numbered chunks (name0, name1 ...) in order; undefined when neither exists.
 */
async function listAttribute(h5: H5Worker, path: string, name: string): Promise<string[] | undefined> {
  const attributes = new Set(await h5.request<string[]>({ op: 'attributes', path }, `list the attributes of ${path}`));
  if (attributes.has(name)) return h5.request<string[]>({ op: 'names', path, name }, `read ${path} attribute ${name}`);
  if (!attributes.has(`${name}0`)) return undefined;
  const values: string[] = [];
  for (let k = 0; attributes.has(`${name}${k}`); k++)
    values.push(...(await h5.request<string[]>({ op: 'names', path, name: `${name}${k}` }, `read ${path} attribute ${name}${k}`)));
  return values;
}

/** Keras 1's "block1_conv1_W_1:0" / "block1_conv1_b:0" (the "_1" and ":0" optional): the layer and W or b. */
const KERAS1_NAME = /(?:^|\/)([A-Za-z0-9_]+?)_(W|b)(?:_\d+)?(?::\d+)?$/;

/** The conv parameter a dataset path names: Keras 2's ".../block1_conv1/kernel:0", or Keras 1's. */
export function parseKerasWeightPath(path: string): { conv: string; kind: Kind } | undefined {
  const keras2 = parseParamName(path.replace(/^\//, ''));
  if (keras2) return keras2;
  const m = KERAS1_NAME.exec(path);
  const conv = m ? canonicalConvName(m[1]) : undefined;
  return conv ? { conv, kind: m![2] === 'W' ? 'kernel' : 'bias' } : undefined;
}

/** The fallback for files without weight_names: each dataset by its name. */
function byName(datasets: DatasetInfo[]): Map<string, WeightPaths> {
  const found = new Map<string, WeightPaths>();
  for (const ds of datasets) {
    const param = parseKerasWeightPath(ds.path);
    if (!param) continue;
    const paths = found.get(param.conv) ?? {};
    if (paths[param.kind]) fail(`${param.conv} ${param.kind} appears twice (${paths[param.kind]}, ${ds.path})`);
    paths[param.kind] = ds.path;
    found.set(param.conv, paths);
  }
  return found;
}

/** One kernel or bias, its shape and type checked before its values are read (a corrupt header may claim any size). */
async function readWeight(h5: H5Worker, conv: string, kind: Kind, path: string): Promise<Float32Array> {
  const node = await h5.request<NodeInfo>({ op: 'node', path }, `look up ${path}`);
  check(
    node.kind === 'dataset',
    `${path} (the ${conv} ${kind}) is ${node.kind === 'missing' ? 'missing' : 'not a dataset'}`,
    'WEIGHTS_CORRUPT',
    path,
  );
  const { inChannels, outChannels } = layerShape(conv);
  const want = kind === 'kernel' ? [3, 3, inChannels, outChannels] : [outChannels];
  checkShape(conv, kind, node.shape ?? [], want);
  check(FLOAT_DTYPES.has(node.dtype), () => `${path} holds ${node.dtype} values, not 32- or 64-bit floats`, 'WEIGHTS_CORRUPT', path);
  const value = await h5.request<Float32Array | Float64Array | null>({ op: 'read', path }, `read ${path}`);
  if (!(value instanceof Float32Array || value instanceof Float64Array)) fail(`${path} is not floating-point data (${node.dtype})`);
  check(value.length === want.reduce((a, b) => a * b, 1), `${path} holds ${value.length} values`);
  return value instanceof Float32Array ? value : Float32Array.from(value);
}

let shared: H5Worker | undefined;

/** The ESM entry of h5wasm's Node build, found by walking up to node_modules (it has no require export to resolve). */
function h5wasmUrl(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const pkg = join(dir, 'node_modules', 'h5wasm', 'package.json');
    if (existsSync(pkg)) {
      const entry = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: string }> }).exports['./node'].import;
      return pathToFileURL(join(dirname(pkg), entry)).href;
    }
    if (dirname(dir) === dir) throw new Error('h5wasm is not installed');
  }
}

/**
 * The worker: with HDF5's errors made to throw, it answers "open" (read-only),
 * "attributes" (the attribute names of a group, at most 10,000), "names" (a
 * list-of-names attribute: one-dimensional, at most 100,000 strings of at
 * most 4096 bytes, its shape and type checked before its values are read;
 * an empty numeric list is an empty list, as Keras 1 stored one), "node"
 * (what a path is: a group, a dataset with its shape and dtype, missing),
 * "list" (every dataset under a group, walking at most 10,000 objects 8 groups
 * deep, since a corrupt file may link a group into itself), "read" (one
 * dataset's values) and "close". Plain JavaScript, run with eval.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
// The C library's diagnostics (and Emscripten's abort notice) are not for the user.
console.log = console.warn = console.error = () => {};
process.stdout.write = process.stderr.write = () => true;
(async () => {
  let file;
  const reply = (id, value, error) => parentPort.postMessage({ id, value, error }, value && value.buffer ? [value.buffer] : []);
  const h5wasm = (await import(workerData.h5url)).default;
  const module = await h5wasm.ready;
  module.activate_throwing_error_handler();
  const group = (path) => {
    const g = file.get(path);
    if (!(g instanceof h5wasm.Group)) throw new Error(path + ' is not a group');
    return g;
  };
  const names = (path, name) => {
    const a = group(path).attrs[name];
    const shape = a.shape;
    if (!shape || shape.length !== 1) throw new Error('attribute ' + name + ' of ' + path + ' is not a one-dimensional list');
    if (shape[0] > 100000) throw new Error('attribute ' + name + ' of ' + path + ' lists ' + shape[0] + ' names');
    if (shape[0] === 0) return [];
    const meta = a.metadata;
    if (meta.type !== 3) throw new Error('attribute ' + name + ' of ' + path + ' holds numbers, not names');
    if (!meta.vlen && meta.size > 4096) throw new Error('attribute ' + name + ' of ' + path + ' holds strings of ' + meta.size + ' bytes');
    const value = a.value;
    const list = Array.isArray(value) ? value : [value];
    if (list.some((v) => typeof v !== 'string' || v.length > 4096)) throw new Error('attribute ' + name + ' of ' + path + ' holds something other than names');
    return list;
  };
  const node = (path) => {
    const n = file.get(path);
    if (n instanceof h5wasm.Group) return { kind: 'group' };
    if (n instanceof h5wasm.Dataset) return { kind: 'dataset', path: n.path, shape: n.shape, dtype: String(n.dtype) };
    return { kind: n ? 'other' : 'missing' };
  };
  const list = (path) => {
    const out = [];
    let visited = 0;
    const walk = (g, depth) => {
      for (const name of g.keys()) {
        if (++visited > 10000) throw new Error('more than 10000 HDF5 objects: not a VGG-19 weight file');
        const child = g.get(name);
        if (child instanceof h5wasm.Group) { if (depth < 8) walk(child, depth + 1); }
        else if (child instanceof h5wasm.Dataset) out.push({ path: child.path, shape: child.shape, dtype: String(child.dtype) });
      }
    };
    walk(group(path), 0);
    return out;
  };
  parentPort.on('message', ({ id, op, path, name }) => {
    try {
      if (op === 'open') { file = new h5wasm.File(path, 'r'); reply(id, true); }
      else if (op === 'close') { const f = file; file = undefined; if (f) f.close(); reply(id, true); }
      else if (op === 'attributes') {
        const all = Object.keys(group(path).attrs);
        if (all.length > 10000) throw new Error(path + ' has ' + all.length + ' attributes');
        reply(id, all);
      }
      else if (op === 'names') reply(id, names(path, name));
      else if (op === 'node') reply(id, node(path));
      else if (op === 'list') reply(id, list(path));
      else reply(id, file.get(path).value);
    } catch (e) { reply(id, undefined, String((e && e.message) || e)); }
  });
})().catch((e) => { throw e; });
`;

/** One worker running h5wasm; requests are answered in order. */
class H5Worker {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private dead: Error | undefined;
  /** True once the WebAssembly instance may be unusable: an abort, a death, or a request that timed out. */
  broken = false;

  constructor() {
    // (No piped stdio: piped streams would keep the process alive; the worker silences itself.)
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { h5url: h5wasmUrl() } });
    this.worker.unref(); // an idle worker must not keep the CLI alive
    this.worker.on('message', ({ id, value, error }: { id: number; value: unknown; error?: string }) => {
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (error === undefined) return p?.resolve(value);
      if (error.includes('Aborted(')) this.broken = true;
      p?.reject(new Error(error));
    });
    const die = (e: Error) => {
      this.dead = e;
      this.broken = true;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', (e) => die(e));
    this.worker.on('exit', () => die(new Error('the HDF5 worker stopped')));
  }

  /** Sends one request; failures become FormatErrors "HDF5 cannot <what> (<reason>)". */
  async request<T = unknown>(
    message:
      | { op: 'open' | 'attributes' | 'node' | 'list' | 'read'; path: string }
      | { op: 'names'; path: string; name: string }
      | { op: 'close' },
    what: string,
  ): Promise<T> {
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.broken = true;
        reject(new Error(`no answer within ${REQUEST_TIMEOUT_S} s`));
      }, REQUEST_TIMEOUT_S * 1000);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.worker.ref(); // keep the process alive while waiting
      this.worker.postMessage({ id, ...message });
    });
    try {
      return (await answer) as T;
    } catch (e) {
      return fail(`HDF5 cannot ${what} (${hdf5Reason(e as Error)})`);
    } finally {
      if (this.pending.size === 0) this.worker.unref();
    }
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

/** The most specific line of an HDF5 error stack ("... in H5F__super_read(): truncated file: eof = 3000 ..."). */
function hdf5Reason(e: Error): string {
  const text = e.message;
  const frames = [...text.matchAll(/#\d+: .* in (\w+\(\)): (.*)/g)];
  const line = frames.length > 0 ? frames[frames.length - 1][2] : text.split('\n')[0];
  return line.trim().slice(0, 200);
}

registerFormat({
  name: 'keras-h5',
  description: 'Keras HDF5 (.h5)',
  detect: (p) => !p.isDirectory && hasHdf5Signature(p.head),
  load: (p) => loadKerasH5(p),
});
