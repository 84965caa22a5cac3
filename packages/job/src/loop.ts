import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  adamStepSizes,
  startLbfgs,
  toPixels,
  UserError,
  type AdamConfig,
  type Backend,
  type ImageTensor,
  type LbfgsConfig,
  type LbfgsRun,
  type LossValues,
  type Preprocessing,
  type RgbImage,
  type Session,
  type SessionOptions,
  type Targets,
} from '@nst/core';
import type { CheckpointStore } from './checkpoint.js';
import { releaseDropped } from './memory.js';
import { saveRendered, type ItemOutput } from './output.js';
import type { FileState } from './settings.js';

/** The images a render starts from: its targets, one per batch item, and the initial images (batch x H x W x 3, network space). */
export interface RenderInputs {
  readonly targets: readonly Targets[];
  readonly initialImages: Float32Array;
}

/** Everything the optimisation loop needs for one scale of one engine batch: images loaded and preprocessed, paths and schedule checked. */
export interface RenderPlan {
  readonly session: SessionOptions;
  /**
   * The inputs, taken once: the loop keeps no reference to them once the
   * session has them, so that a large render holds no copy it no longer
   * needs (the caller should keep none either).
   */
  readonly takeInputs: () => RenderInputs;
  /** The session to render in (default: the backend's own, untiled). */
  readonly createSession?: (options: SessionOptions) => Promise<Session>;
  readonly preprocessing: Preprocessing;
  /** Final image path per batch item; intermediate saves go to <stem>_<iteration><ext>, an interrupted run's image to <stem>.partial<ext>. */
  readonly outPaths: readonly string[];
  /** How each batch item becomes a file. */
  readonly outputs: readonly ItemOutput[];
  readonly iterations: number;
  /** lr in the weight set's units. */
  readonly adam: AdamConfig;
  /** 'adam' (the notebook's) or 'lbfgs' (neural-style's; then `lbfgs` configures it). */
  readonly optimizer: 'adam' | 'lbfgs';
  readonly lbfgs: LbfgsConfig;
  /** Write the outputs at the end (false: a coarse scale, whose result only feeds the next). */
  readonly writeOutputs: boolean;
  /** Report losses every N iterations (and at the end). */
  readonly printEvery: number;
  /** Save intermediate images every N iterations; 0 = never. */
  readonly saveEvery: number;
  /** Snapshot every N iterations; 0 = only on interrupt. */
  readonly checkpointEvery: number;
  /** Continue from the checkpoint in `checkpoints` when there is one. */
  readonly resume: boolean;
  /** Where the batch's resumable snapshots go (one per item; written on interrupt and every checkpointEvery). */
  readonly checkpoints: CheckpointStore;
}

export interface IterationReport {
  /** The loss is that of the image after this many updates (0 = the initial image). */
  readonly iteration: number;
  /** Per batch item. */
  readonly losses: readonly LossValues[];
  /** Since the optimisation started (after targets were set). */
  readonly elapsedMs: number;
}

export interface RenderEvents {
  onReport?(report: IterationReport): void;
  /** After each chunk of iterations: updates done so far (counting resumed ones). */
  onProgress?(iteration: number, elapsedMs: number): void;
  /** A file written: a snapshot, an interrupted run's partial image, or the output. */
  onSaved?(file: string, iteration: number, state: FileState['state']): void;
  onResumed?(iteration: number): void;
  /** The images as they form, one per batch item, at most every `previewEveryMs`. */
  onPreview?(images: RgbImage[], iteration: number): void | Promise<void>;
  previewEveryMs?: number;
  /** Something the user should know that is not an error (one line); `detail`: only when asked for (it says the default happened). */
  onNotice?(line: string, detail?: boolean): void;
}

export interface RenderResult {
  readonly iterations: number;
  /** Loss evaluations (forward and backward passes) of the optimiser: one per Adam update; L-BFGS counts every line-search trial. */
  readonly evaluations: number;
  readonly startIteration: number;
  readonly seconds: number;
  readonly interrupted: boolean;
  readonly finalLosses: readonly LossValues[];
  readonly outPaths: readonly string[];
  /** The final images, batch x H x W x 3, network space. */
  readonly images: Float32Array;
}

/** Aim for about this long per backend call: short enough to react to Ctrl-C, long enough to amortise the call. */
const TARGET_CALL_MS = 400;

export function intermediatePath(outPath: string, iteration: number): string {
  const ext = path.extname(outPath);
  return `${outPath.slice(0, outPath.length - ext.length)}_${iteration}${ext}`;
}

/**
 * Where an interrupted run leaves its image: beside the output, never under
 * its name (a script that finds the output takes it for a result); the run
 * that finishes the job removes it.
 */
export function partialPath(outPath: string): string {
  const ext = path.extname(outPath);
  return `${outPath.slice(0, outPath.length - ext.length)}.partial${ext}`;
}

/**
 * The notebook's loop, on any backend: set targets once, then Adam (or
 * L-BFGS) iterations in chunks that end on every report, save and checkpoint boundary; the loss of
 * iteration i is that of the image after i updates.
 */
export async function runOptimisation(
  backend: Backend,
  plan: RenderPlan,
  events: RenderEvents = {},
  signal?: AbortSignal,
): Promise<RenderResult> {
  const { session: options } = plan;
  const pixelsPerImage = options.height * options.width * 3;
  if (plan.outPaths.length !== options.batch) throw new Error('one output path per batch item is needed');
  const { session, resumed, start, handedOver } = await startSession(backend, plan, events);
  // The session has its own copies: the inputs' memory goes now.
  releaseDropped(handedOver);
  let disposed = false;
  const dispose = () => {
    if (!disposed) session.dispose();
    disposed = true;
  };
  try {
    let iteration = resumed?.iteration ?? 0;
    const store = plan.checkpoints;
    const startIteration = iteration;
    // L-BFGS starts from the images just set; a resumed run starts a new history.
    const lbfgs: LbfgsRun | undefined = plan.optimizer === 'lbfgs' ? await startLbfgs(session, plan.lbfgs) : undefined;

    const tensorOf = (all: Float32Array, b: number): ImageTensor => ({
      height: options.height,
      width: options.width,
      data: all.subarray(b * pixelsPerImage, (b + 1) * pixelsPerImage),
    });
    const pixelsOf = (all: Float32Array, b: number) => toPixels(tensorOf(all, b), plan.preprocessing);
    // The last images known to be finite with a finite loss, kept on the host
    // so that a run that diverges can still hand back its last good result.
    // The loop reads images back only at report boundaries (every printEvery,
    // a few per cent of the time of the iterations between them), not per call.
    let lastGood: { iteration: number; images: Float32Array } | undefined;
    const diverged = async (at: number, what: string): Promise<never> => {
      let kept = 'there is no finite image to keep';
      if (lastGood) {
        const files = await writeImages(lastGood.images, (out) => intermediatePath(out, lastGood!.iteration), {
          state: 'snapshot',
          iteration: lastGood.iteration,
        });
        kept = `the last finite image (iteration ${lastGood.iteration}) is in ${files.map((f) => `'${f}'`).join(', ')}`;
      }
      const fromCheckpoint = resumed !== undefined && at === startIteration;
      throw new UserError(
        fromCheckpoint
          ? `the checkpoint ${store.name} resumes into a ${what}: delete it to start again; ${kept}`
          : `the ${what} at iteration ${at}: the learning rate is likely too high, or a layer, content, style or smoothness weight too large; ${kept}`,
        { code: 'not-finite', field: fromCheckpoint ? 'resume' : 'lr' },
      );
    };
    /** What each file records of itself beside the job's settings; `losses` per batch item. */
    type Stamp = { state: FileState['state']; iteration: number; losses?: readonly LossValues[] };
    const writeImages = async (all: Float32Array, pathFor: (out: string) => string, stamp: Stamp) => {
      const files: string[] = [];
      for (let b = 0; b < options.batch; b++) {
        const file = pathFor(plan.outPaths[b]);
        const state = { state: stamp.state, iteration: stamp.iteration, iterations: plan.iterations, losses: stamp.losses?.[b] };
        await saveRendered(file, tensorOf(all, b), plan.preprocessing, plan.outputs[b], state);
        files.push(file);
      }
      return files;
    };
    const saveAll = async (pathFor: (out: string) => string, stamp: Stamp) => {
      const all = await session.readImages();
      if (!allFinite(all)) await diverged(stamp.iteration, 'image stopped being finite');
      for (const file of await writeImages(all, pathFor, stamp)) events.onSaved?.(file, stamp.iteration, stamp.state);
    };
    const checkpoint = async () => {
      const [images, state] = [await session.readImages(), await session.readOptimizerState()];
      // A checkpoint is only ever a state worth resuming.
      if (!allFinite(images) || !allFinite(state.m) || !allFinite(state.v))
        await diverged(iteration, 'image or optimiser state stopped being finite');
      await store.write({ iteration, images, m: state.m, v: state.v });
    };
    let lastPreview = performance.now();
    const preview = async () => {
      if (!events.onPreview || performance.now() - lastPreview < (events.previewEveryMs ?? 2000)) return;
      lastPreview = performance.now();
      const all = await session.readImages();
      await events.onPreview(
        Array.from({ length: options.batch }, (_, b) => pixelsOf(all, b)),
        iteration,
      );
    };

    const started = performance.now();
    const elapsed = () => performance.now() - started;
    let chunk = 1;
    let interrupted = false;
    while (iteration < plan.iterations) {
      if (signal?.aborted) {
        interrupted = true;
        break;
      }
      const boundary = Math.min(
        plan.iterations,
        nextMultiple(iteration, plan.printEvery),
        nextMultiple(iteration, plan.saveEvery),
        nextMultiple(iteration, plan.checkpointEvery),
      );
      const count = Math.min(chunk, boundary - iteration);
      const t0 = performance.now();
      const at = iteration;
      const reporting = at % plan.printEvery === 0;
      const before = reporting ? await session.readImages() : undefined;
      const onProgress = (done: number) => events.onProgress?.(at + done, elapsed());
      const losses = lbfgs
        ? await lbfgs.iterate(count, onProgress)
        : await session.iterate({ adam: plan.adam, stepSizes: adamStepSizes(plan.adam, iteration + 1, count), onProgress });
      if (!lossesFinite(losses)) await diverged(at, 'loss stopped being finite');
      if (before && allFinite(before)) lastGood = { iteration: at, images: before };
      if (reporting) events.onReport?.({ iteration: at, losses, elapsedMs: elapsed() });
      iteration += count;
      events.onProgress?.(iteration, elapsed());
      // Grow or shrink the chunk so a call takes about TARGET_CALL_MS.
      const perIteration = (performance.now() - t0) / count;
      chunk = Math.max(1, Math.min(1000, Math.floor(TARGET_CALL_MS / Math.max(perIteration, 1e-3))));
      if (iteration < plan.iterations) {
        if (plan.saveEvery > 0 && iteration % plan.saveEvery === 0)
          await saveAll((out) => intermediatePath(out, iteration), { state: 'snapshot', iteration });
        if (plan.checkpointEvery > 0 && iteration % plan.checkpointEvery === 0) await checkpoint();
        await preview();
      }
    }

    const finalLosses = await session.iterate({ adam: plan.adam, stepSizes: new Float32Array(0) });
    if (!lossesFinite(finalLosses)) await diverged(iteration, 'loss stopped being finite');
    const seconds = elapsed() / 1000;
    events.onReport?.({ iteration, losses: finalLosses, elapsedMs: elapsed() });
    // One copy of the final images for everything below.
    const images = await session.readImages();
    if (!allFinite(images)) await diverged(iteration, 'image stopped being finite');
    if (!interrupted && iteration > startIteration && digest(images) === start) refuseFrozen(iteration - startIteration);
    const evaluations = lbfgs ? lbfgs.evaluations : iteration - startIteration;
    if (interrupted) {
      await checkpoint();
      dispose();
      for (const file of await writeImages(images, partialPath, { state: 'partial', iteration, losses: finalLosses }))
        events.onSaved?.(file, iteration, 'partial');
    } else {
      // The session's memory (a tiled session's nets and the images' state) goes before the files are encoded.
      dispose();
      if (plan.writeOutputs) {
        for (const file of await writeImages(images, (out) => out, { state: 'final', iteration, losses: finalLosses }))
          events.onSaved?.(file, iteration, 'final');
        // The result replaces what an interrupted run of it left.
        for (const out of plan.outPaths) await fs.rm(partialPath(out), { force: true });
      }
      await store.clear();
    }
    return { iterations: iteration, evaluations, startIteration, seconds, interrupted, finalLosses, outPaths: plan.outPaths, images };
  } finally {
    dispose();
  }
}

/**
 * A new session holding the render's inputs: its targets set, then its
 * images (the initial ones, or the checkpoint's with Adam's state). In a
 * function of its own so that nothing of the loop's holds the inputs after:
 * a suspended async function keeps the values its locals and temporaries
 * last held, and those of a large render are images of hundreds of MiB.
 * `resumed`: the iteration the checkpoint continues; `start`: the images'
 * digest, to tell at the end whether they moved at all; `handedOver`: the
 * inputs' bytes, now the session's.
 */
async function startSession(
  backend: Backend,
  plan: RenderPlan,
  events: RenderEvents,
): Promise<{ session: Session; resumed?: { iteration: number }; start: string; handedOver: number }> {
  const { session: options } = plan;
  const inputs = plan.takeInputs();
  if (inputs.initialImages.length !== options.batch * options.height * options.width * 3)
    throw new Error('initialImages has the wrong length');
  const handedOver = inputs.initialImages.byteLength + inputs.targets.reduce((a, t) => a + t.content.data.byteLength, 0);
  const session = await (plan.createSession ?? ((o: SessionOptions) => backend.createSession(o)))(options);
  try {
    await session.setTargets(inputs.targets);
    const ck = plan.resume ? await resumeState(plan.checkpoints, inputs.initialImages.length, events) : undefined;
    if (!ck) {
      await session.setImages(inputs.initialImages);
      return { session, start: digest(inputs.initialImages), handedOver };
    }
    await session.setImages(ck.images);
    await session.writeOptimizerState({ m: ck.m, v: ck.v });
    const iteration = Math.min(ck.iteration, plan.iterations);
    events.onResumed?.(iteration);
    return { session, resumed: { iteration }, start: digest(ck.images), handedOver };
  } catch (e) {
    session.dispose();
    throw e;
  }
}

/** A digest of the images' bytes: whether they changed, without keeping a copy. */
function digest(images: Float32Array): string {
  return createHash('sha1')
    .update(new Uint8Array(images.buffer, images.byteOffset, images.byteLength))
    .digest('hex');
}

/** The checkpoint to resume from, or undefined (with a notice) when there is none. */
async function resumeState(store: CheckpointStore, length: number, events: RenderEvents) {
  const ck = await store.read();
  if (!ck) {
    events.onNotice?.(`no checkpoint ${store.name} to resume: starting from the beginning`);
    return undefined;
  }
  if (ck.images.length !== length)
    throw new UserError(`checkpoint ${store.name} has the wrong size`, { code: 'conflict', field: 'resume' });
  if (!allFinite(ck.images) || !allFinite(ck.m) || !allFinite(ck.v))
    throw new UserError(`checkpoint ${store.name} holds values that are not finite: delete it to start again`, {
      code: 'not-finite',
      field: 'resume',
    });
  return ck;
}

/**
 * An image that did not change at all over its iterations is no result:
 * Adam's steps were too small to move a float32 pixel, or the squared
 * gradient it keeps overflowed (a loss weight far too large), which stops
 * every update. Refused rather than written as if it were one.
 */
function refuseFrozen(iterations: number): never {
  throw new UserError(
    `the image did not change in ${iterations} iterations: the learning rate is too small to move a pixel, or a content, style or smoothness weight so large that the optimiser's state overflowed`,
    { code: 'not-finite', field: 'lr' },
  );
}

function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

function lossesFinite(losses: readonly LossValues[]): boolean {
  return losses.every((l) => Number.isFinite(l.total) && Number.isFinite(l.content) && Number.isFinite(l.style) && Number.isFinite(l.tv));
}

/** The smallest multiple of `every` greater than `n` (Infinity when every is 0). */
function nextMultiple(n: number, every: number): number {
  return every > 0 ? (Math.floor(n / every) + 1) * every : Infinity;
}
