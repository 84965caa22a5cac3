/**
 * Multi-threaded WASM for @tensorflow/tfjs-backend-wasm under Node.
 *
 * The package ships a threaded SIMD build (Emscripten pthreads on
 * worker_threads) but disables it in Node (github.com/tensorflow/tfjs, issue 3830) for two reasons
 * this file works around, only while the backend initialises:
 *  1. Emscripten starts each pthread worker from a `blob:` URL, which Node's
 *     Worker cannot load. We catch the two blobs involved (the worker script
 *     and the module factory) as they are created, write them once to a
 *     private temporary folder, and hand each worker a file path instead.
 *  2. The C++ side caps its thread pool at emscripten_num_logical_cores() / 2
 *     (it assumes two hyper-threads per core), i.e. at os.cpus().length / 2.
 *     We report 2 * threads logical cores during initialisation so that the
 *     pool gets exactly `threads` threads.
 * Emscripten starts a pool of 8 workers and waits for every one to report
 * "loaded". A worker that exits first (an empty script exits silently with
 * code 0) or never reports would leave that wait, and so the render, hanging:
 * the start fails instead (the caller falls back to one thread), and its
 * workers are terminated.
 * Afterwards the pthread workers are unref'd: they only ever run inside a
 * synchronous kernel call, and must not keep a finished process alive.
 * Measured on the 2-core CI machine: a 128x128x64->64 3x3 convolution goes
 * from about 25 to about 48 GFLOP/s with 2 threads.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

/** The factory source refers to these names of the bundle it was cut from (tf-backend-wasm.node.js). */
const FACTORY_PRELUDE =
  "var require$$0 = require('fs'), require$$1 = require('path'), require$$3 = require('perf_hooks'), require$$4 = require('os');\n" +
  'var commonjsGlobal = globalThis;\n';

const FACTORY_MARKER = 'var WasmBackendModuleThreadedSimd';

/** The bundle reads `require('worker_threads').Worker` while it initialises: this object. */
const workerThreads = createRequire(import.meta.url)('worker_threads') as typeof import('node:worker_threads');

export interface NodeWasmThreadsOptions {
  /** How long the pool may take to load before the start is given up (default 30 s; it takes about 0.5 s). */
  readonly startTimeoutMs?: number;
}

/**
 * Runs `init` (which must initialise the wasm backend) with the patches in
 * place and removes them afterwards, whatever happens. Rejects, with the
 * pool's workers terminated, if a worker exits or the pool does not load in
 * time.
 */
export async function withNodeWasmThreads<T>(threads: number, init: () => Promise<T>, options: NodeWasmThreadsOptions = {}): Promise<T> {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'nst-tfjs-wasm-'));
  process.once('exit', () => fs.rmSync(folder, { recursive: true, force: true }));

  // 1. Remember the text of every all-string Blob, and turn the worker blob into a file.
  const OriginalBlob = globalThis.Blob;
  const originalCreateObjectURL = URL.createObjectURL;
  const blobTexts = new WeakMap<Blob, string>();
  let factoryText: string | undefined;
  type BlobArgs = ConstructorParameters<typeof Blob>;
  class RecordingBlob extends OriginalBlob {
    constructor(parts?: BlobArgs[0], options?: BlobArgs[1]) {
      super(parts ?? [], options);
      if (parts?.every((p) => typeof p === 'string')) {
        const text = (parts as string[]).join('');
        blobTexts.set(this, text);
        if (text.startsWith(FACTORY_MARKER)) factoryText = text;
      }
    }
  }
  // The bundle makes a new worker blob for each of its 8 workers. The files are
  // written once, for the first, before any worker exists: rewriting them for
  // each blob let a worker that had already started read a truncated script
  // and exit silently (the likely cause of the CI renders that never started).
  let workerPath: string | undefined;
  const createObjectURL = (blob: Blob): string => {
    const text = blobTexts.get(blob);
    if (text === undefined || factoryText === undefined) return originalCreateObjectURL(blob);
    if (workerPath === undefined) {
      const factoryPath = path.join(folder, 'factory.cjs');
      fs.writeFileSync(factoryPath, FACTORY_PRELUDE + factoryText);
      // The worker imports the factory from the Blob it is sent: point it at the file instead.
      const workerText = text
        .replace('URL.createObjectURL(e.data.urlOrBlob)', JSON.stringify(factoryPath))
        .replace('URL.revokeObjectURL(objectUrl)', 'void 0');
      workerPath = path.join(folder, 'worker.cjs');
      fs.writeFileSync(workerPath, workerText);
    }
    return workerPath;
  };

  // 2. Report twice the cores so that the pool's "logical / 2" cap becomes `threads`.
  const originalCpus = os.cpus;
  const cpus = () => {
    const real = originalCpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  };

  // 3. Watch the pool: any worker exit before the start completes is a failed start.
  const OriginalWorker = workerThreads.Worker;
  const workers: InstanceType<typeof OriginalWorker>[] = [];
  let started = false;
  let failStart: (reason: Error) => void = () => undefined;
  const startFailed = new Promise<never>((_, reject) => (failStart = reject));
  class WatchedWorker extends OriginalWorker {
    constructor(...args: ConstructorParameters<typeof OriginalWorker>) {
      super(...args);
      const index = workers.push(this) - 1;
      this.once('exit', (code) => {
        if (!started) failStart(new Error(`wasm thread worker ${index + 1} of the pool exited (code ${code}) before the pool had loaded`));
      });
    }
  }
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const timer = setTimeout(() => failStart(new Error(`the wasm thread pool did not load within ${timeoutMs / 1000} s`)), timeoutMs);

  globalThis.Blob = RecordingBlob as typeof Blob;
  URL.createObjectURL = createObjectURL;
  os.cpus = cpus;
  workerThreads.Worker = WatchedWorker;
  try {
    const result = await Promise.race([init(), startFailed]);
    started = true;
    unrefWorkers(await backendModule());
    return result;
  } finally {
    clearTimeout(timer);
    globalThis.Blob = OriginalBlob;
    URL.createObjectURL = originalCreateObjectURL;
    os.cpus = originalCpus;
    workerThreads.Worker = OriginalWorker;
    // A failed start leaves loaded workers idle and the others possibly running: end them all.
    if (!started) for (const worker of workers) void worker.terminate();
  }
}

/** Emscripten's pthread bookkeeping, as exported on the wasm module object. */
interface PThreadModule {
  PThread?: { unusedWorkers?: Array<{ unref?: () => void }>; runningWorkers?: Array<{ unref?: () => void }> };
}

async function backendModule(): Promise<PThreadModule | undefined> {
  const tf = await import('@tensorflow/tfjs');
  return (tf.findBackend('wasm') as unknown as { wasm?: PThreadModule } | null)?.wasm;
}

function unrefWorkers(module: PThreadModule | undefined): void {
  const pthread = module?.PThread;
  for (const worker of [...(pthread?.unusedWorkers ?? []), ...(pthread?.runningWorkers ?? [])]) worker.unref?.();
}
