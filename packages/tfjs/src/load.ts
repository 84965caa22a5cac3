/**
 * Chooses and initialises the TensorFlow.js backend, in order of speed:
 *   node  @tensorflow/tfjs-node (libtensorflow; an optional dependency whose
 *         install needs the internet, so it is often absent)
 *   wasm  @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD, all cores)
 *   cpu   the pure-JavaScript kernels of @tensorflow/tfjs
 * TensorFlow.js has one global engine per process, so the choice is made once
 * per process and cached: every backend object shares it.
 */
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as tfjs from '@tensorflow/tfjs';
import { withNodeWasmThreads } from './wasm-threads.js';

export type Tf = typeof tfjs;
export type TfjsKind = 'node' | 'wasm' | 'cpu';
export const TFJS_KINDS: readonly TfjsKind[] = ['node', 'wasm', 'cpu'];

export interface TfjsLoadOptions {
  /** Tried first; the others follow in the usual order (node, wasm, cpu). */
  readonly prefer?: TfjsKind;
  /** Threads for wasm (default: all cores). */
  readonly threads?: number;
  /** How long wasm's thread pool may take to load before wasm falls back to one thread (default 30 s). */
  readonly threadsStartTimeoutMs?: number;
}

/** What runs, and why the faster choices tried before it did not. */
export interface TfjsSelection {
  readonly kind: TfjsKind;
  /** e.g. "tfjs (wasm, 2 threads)" */
  readonly detail: string;
  readonly threads: number;
  readonly rejected: ReadonlyArray<{ readonly kind: TfjsKind; readonly reason: string }>;
  readonly tf: Tf;
}

const require = createRequire(import.meta.url);

/** The @tensorflow/tfjs-backend-wasm release whose Node bundle wasm-threads.ts patches. */
const NODE_THREADS_VERSION = '4.22.0';

interface Loaded {
  readonly tf: Tf;
  readonly detail: string;
  readonly threads: number;
}

async function loadNode(): Promise<Loaded> {
  // A variable specifier keeps TypeScript and bundlers from requiring the optional package.
  const name = '@tensorflow/tfjs-node';
  const tf = (await import(name)) as Tf;
  if (!(await tf.setBackend('tensorflow'))) throw new Error("tfjs-node loaded but its 'tensorflow' backend did not start");
  return { tf, detail: `tfjs (node, libtensorflow)`, threads: os.availableParallelism() };
}

async function loadWasm(threads: number, threadsStartTimeoutMs?: number): Promise<Loaded> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries sit next to the package's main file; load them from disk.
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  wasm.setThreadsCount(threads);
  let started = false;
  let threadsFailed = '';
  // The threads work-around depends on the bundle's internals: only on the version it was written for.
  if (threads > 1 && wasm.version_wasm === NODE_THREADS_VERSION) {
    tfjs.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    started = await withNodeWasmThreads(threads, () => tfjs.setBackend('wasm'), { startTimeoutMs: threadsStartTimeoutMs }).catch(
      (e: unknown) => {
        threadsFailed = `; ${threads} threads did not start: ${firstLine(e)}`;
        return false;
      },
    );
  }
  if (!started) {
    // Single-threaded: the package's own Node path.
    tfjs.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    wasm.setThreadsCount(1);
    started = await tfjs.setBackend('wasm');
  }
  if (!started) throw new Error('the wasm backend did not start');
  const actual = wasm.getThreadsCount();
  return { tf: tfjs, detail: `tfjs (wasm, ${actual} thread${actual === 1 ? '' : 's'}${threadsFailed})`, threads: actual };
}

async function loadCpu(): Promise<Loaded> {
  if (!(await tfjs.setBackend('cpu'))) throw new Error('the cpu backend did not start');
  return { tf: tfjs, detail: 'tfjs (cpu, pure JavaScript)', threads: 1 };
}

let selection: Promise<TfjsSelection> | undefined;

/**
 * Initialises the first TensorFlow.js backend that starts (see the file
 * comment) and says why the ones tried before it did not. The first call in a
 * process decides; later calls return the same selection whatever they ask.
 */
export function selectTfjsBackend(options: TfjsLoadOptions = {}): Promise<TfjsSelection> {
  selection ??= select(options);
  return selection;
}

async function select(options: TfjsLoadOptions): Promise<TfjsSelection> {
  // PROD: no debug checks, and no "install tfjs-node" banner from the cpu backend.
  tfjs.env().set('PROD', true);
  const threads = Math.max(1, Math.min(8, Math.floor(options.threads ?? os.availableParallelism())));
  const order = options.prefer ? [options.prefer, ...TFJS_KINDS.filter((k) => k !== options.prefer)] : [...TFJS_KINDS];
  const loaders: Record<TfjsKind, () => Promise<Loaded>> = {
    node: loadNode,
    wasm: () => loadWasm(threads, options.threadsStartTimeoutMs),
    cpu: loadCpu,
  };
  const rejected: { kind: TfjsKind; reason: string }[] = [];
  for (const kind of order) {
    try {
      const loaded = await loaders[kind]();
      await loaded.tf.ready();
      return { kind, ...loaded, rejected };
    } catch (e) {
      rejected.push({ kind, reason: firstLine(e) });
    }
  }
  throw new Error(`no TensorFlow.js backend started: ${rejected.map((r) => `${r.kind}: ${r.reason}`).join('; ')}`);
}

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : typeof e === 'object' && e && 'message' in e ? String(e.message) : String(e);
  return text.split('\n')[0];
}
