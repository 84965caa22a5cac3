/**
 * The TensorFlow.js implementation of core's Backend seam.
 */
import { UserError, checkLayersAvailable, countMemory, validateWeightSet } from '@nst/core';
import type { Backend, MemoryProfile, MemoryShape, Session, SessionOptions, WeightSet } from '@nst/core';
import { selectTfjsBackend } from './load.js';
import type { Tf, TfjsLoadOptions, TfjsSelection } from './load.js';
import { TfVgg } from './network.js';
import { TfjsSession } from './session.js';

/**
 * Buffers TensorFlow.js holds at its peak, per family, fitted to its own
 * count (tf.profile's peakBytes) with a margin: autodiff keeps each layer's
 * convolution, ReLU and pooling outputs for the backward pass, which then
 * allocates a gradient of each; the backward convolutions make transposed
 * copies of the kernels; the image, m, v, the gradient and the update's
 * temporaries are each H x W x 3. packages/tfjs/test/memory.test.ts checks
 * that the estimate covers the measured peak, by less than 3x, at sizes where
 * the weights, the activations and a large style image each dominate.
 */
const TFJS_MEMORY: MemoryProfile = { weightCopies: 5, imageCopies: 8, activationCopies: 7, largestMapCopies: 2, styleForwardCopies: 6 };

export class TfjsBackend implements Backend {
  readonly name = 'tfjs';
  readonly detail: string;
  readonly supportsMasks = true;
  private readonly tf: Tf;
  private vgg: TfVgg | undefined;
  private readonly sessions = new Set<TfjsSession>();

  constructor(readonly selection: TfjsSelection) {
    this.tf = selection.tf;
    this.detail = selection.detail;
  }

  /** Uploads the weights; sessions of earlier weights are disposed. */
  async loadWeights(weights: WeightSet): Promise<void> {
    validateWeightSet(weights);
    this.disposeAll();
    this.vgg = new TfVgg(this.tf, weights);
  }

  estimateMemory(shape: MemoryShape): number {
    return 4 * countMemory(shape, TFJS_MEMORY).total;
  }

  async createSession(options: SessionOptions): Promise<Session> {
    if (!this.vgg) throw new Error('createSession: loadWeights must be called first');
    const { batch, height, width } = options;
    for (const [name, value] of Object.entries({ batch, height, width }))
      if (!Number.isInteger(value) || value < 1) throw new UserError(`tfjs session: ${name} must be a positive integer, got ${value}`);
    checkLayersAvailable(
      options.loss,
      this.vgg.weights.layers.map((l) => l.name),
      this.vgg.weights.source,
    );
    const session: TfjsSession = new TfjsSession(this.tf, this.vgg, options, () => this.sessions.delete(session));
    this.sessions.add(session);
    return session;
  }

  dispose(): void {
    this.disposeAll();
  }

  private disposeAll(): void {
    for (const s of [...this.sessions]) s.dispose();
    this.vgg?.dispose();
    this.vgg = undefined;
  }
}

/**
 * A backend on the fastest TensorFlow.js engine that starts here: tfjs-node,
 * else wasm on all cores, else pure-JS cpu (`prefer` is tried first). Its
 * `detail` says which, e.g. "tfjs (wasm, 2 threads)". The engine is chosen
 * once per process (TensorFlow.js has one global engine).
 */
export async function createTfjsBackend(options?: TfjsLoadOptions): Promise<Backend> {
  return new TfjsBackend(await selectTfjsBackend(options));
}
