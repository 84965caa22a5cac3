/**
 * Keras HDF5 weight files (vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5),
 * read with h5wasm (the HDF5 C library compiled to WebAssembly, reading the
 * host file through NODERAWFS). Keras' save_weights layout: a group per layer
 * (block1_conv1) whose attribute weight_names lists datasets such as
 * "block1_conv1/kernel:0", stored at block1_conv1/block1_conv1/kernel:0;
 * full-model files (model.save) hold the same under /model_weights. Kernels
 * are HWIO (3, 3, in, out) already. Datasets with no VGG conv name (fc1, fc2,
 * predictions of the "with top" file) are skipped unread.
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
import { checkShape, layerShape, parseParamName } from './layers.js';
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

export async function loadKerasH5(probe: Probe): Promise<LoadedFile> {
  const h5 = (shared ??= new H5Worker());
  try {
    await h5.request({ op: 'open', path: probe.path }, 'open it');
    const datasets = await h5.request<DatasetInfo[]>({ op: 'list' }, 'list its contents');
    const partial = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
    for (const ds of datasets) {
      // "/model_weights/block1_conv1/block1_conv1/kernel:0" -> block1_conv1 kernel
      const param = parseParamName(ds.path.replace(/^\//, ''));
      if (!param) continue;
      const { inChannels, outChannels } = layerShape(param.conv);
      // Checking the shape before reading bounds the allocation to the real layer's size.
      checkShape(param.conv, param.kind, ds.shape ?? [], param.kind === 'kernel' ? [3, 3, inChannels, outChannels] : [outChannels]);
      // ... and so does the element type: only 4- or 8-byte floats are read (a corrupt dtype may claim any size).
      check(FLOAT_DTYPES.has(ds.dtype), () => `${ds.path} holds ${ds.dtype} values, not 32- or 64-bit floats`, 'WEIGHTS_CORRUPT', ds.path);
      const value = await h5.request<Float32Array | Float64Array | null>({ op: 'read', path: ds.path }, `read ${ds.path}`);
      if (!(value instanceof Float32Array || value instanceof Float64Array)) fail(`${ds.path} is not floating-point data (${ds.dtype})`);
      check(
        value.length === (param.kind === 'kernel' ? 9 * inChannels * outChannels : outChannels),
        `${ds.path} holds ${value.length} values`,
      );
      const entry = partial.get(param.conv) ?? {};
      if (entry[param.kind]) fail(`${param.conv} ${param.kind} appears twice (${ds.path})`);
      entry[param.kind] = value instanceof Float32Array ? value : Float32Array.from(value);
      partial.set(param.conv, entry);
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
 * "list" (every dataset's path, shape and dtype, walking at most 10,000
 * objects 8 groups deep, since a corrupt file may link a group into itself),
 * "read" (one dataset's values) and "close". Plain JavaScript, run with eval.
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
  parentPort.on('message', ({ id, op, path }) => {
    try {
      if (op === 'open') { file = new h5wasm.File(path, 'r'); reply(id, true); }
      else if (op === 'close') { const f = file; file = undefined; if (f) f.close(); reply(id, true); }
      else if (op === 'list') {
        const out = [];
        let visited = 0;
        const walk = (group, depth) => {
          for (const name of group.keys()) {
            if (++visited > 10000) throw new Error('more than 10000 HDF5 objects: not a VGG-19 weight file');
            const child = group.get(name);
            if (child instanceof h5wasm.Group) { if (depth < 8) walk(child, depth + 1); }
            else if (child instanceof h5wasm.Dataset) out.push({ path: child.path, shape: child.shape, dtype: String(child.dtype) });
          }
        };
        walk(file, 0);
        reply(id, out);
      } else reply(id, file.get(path).value);
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
    message: { op: 'open'; path: string } | { op: 'list' } | { op: 'read'; path: string } | { op: 'close' },
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
