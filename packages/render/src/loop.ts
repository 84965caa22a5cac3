import path from 'node:path';
import {
  adamStepSizes,
  toPixels,
  UserError,
  type AdamConfig,
  type Backend,
  type LossValues,
  type Preprocessing,
  type RgbImage,
  type SessionOptions,
  type Targets,
} from '@nst/core';
import { fileCheckpointStore, type CheckpointStore } from './checkpoint.js';
import { saveImage } from './image-file.js';

/** Everything the optimisation loop needs: images loaded and preprocessed, paths and schedule checked. */
export interface RenderPlan {
  readonly session: SessionOptions;
  /** One per batch item. */
  readonly targets: readonly Targets[];
  /** batch x H x W x 3, network space. */
  readonly initialImages: Float32Array;
  readonly preprocessing: Preprocessing;
  /** Final image path per batch item; intermediate saves go to <stem>_<iteration><ext>. */
  readonly outPaths: readonly string[];
  readonly iterations: number;
  readonly adam: AdamConfig;
  /** Report losses every N iterations (and at the end). */
  readonly printEvery: number;
  /** Save intermediate images every N iterations; 0 = never. */
  readonly saveEvery: number;
  /** Where a resumable snapshot goes (written on interrupt and every checkpointEvery). */
  readonly checkpointPath: string;
  /** Snapshot every N iterations; 0 = only on interrupt. */
  readonly checkpointEvery: number;
  /** Continue from checkpointPath when it exists and matches `fingerprint`. */
  readonly resume: boolean;
  /** Identifies the job (inputs, size, loss, weights): a checkpoint of another job is refused. */
  readonly fingerprint: string;
  /** Where checkpoints go instead of checkpointPath (one per batch item, a shared store). */
  readonly checkpointStore?: CheckpointStore;
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
  onSaved?(file: string, iteration: number): void;
  onResumed?(iteration: number): void;
  /** The images as they form, one per batch item, at most every `previewEveryMs`. */
  onPreview?(images: RgbImage[], iteration: number): void | Promise<void>;
  previewEveryMs?: number;
}

export interface RenderResult {
  readonly iterations: number;
  readonly startIteration: number;
  readonly seconds: number;
  readonly interrupted: boolean;
  readonly finalLosses: readonly LossValues[];
  readonly outPaths: readonly string[];
}

/** Aim for about this long per backend call: short enough to react to Ctrl-C, long enough to amortise the call. */
const TARGET_CALL_MS = 400;

export function intermediatePath(outPath: string, iteration: number): string {
  const ext = path.extname(outPath);
  return `${outPath.slice(0, outPath.length - ext.length)}_${iteration}${ext}`;
}

/**
 * The notebook's loop, on any backend: set targets once, then Adam updates in
 * chunks that end on every report, save and checkpoint boundary; the loss of
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
  if (plan.initialImages.length !== options.batch * pixelsPerImage) throw new Error('initialImages has the wrong length');
  if (plan.outPaths.length !== options.batch) throw new Error('one output path per batch item is needed');

  const session = await backend.createSession(options);
  try {
    await session.setTargets(plan.targets);
    let iteration = 0;
    const store = plan.checkpointStore ?? fileCheckpointStore(plan.checkpointPath, plan.fingerprint);
    const ck = plan.resume ? await store.read() : undefined;
    if (ck) {
      if (ck.images.length !== plan.initialImages.length) throw new UserError(`checkpoint ${store.name} has the wrong size`, { code: 'conflict', field: 'resume' });
      await session.setImages(ck.images);
      await session.writeOptimizerState({ m: ck.m, v: ck.v });
      iteration = Math.min(ck.iteration, plan.iterations);
      events.onResumed?.(iteration);
    } else {
      await session.setImages(plan.initialImages);
    }
    const startIteration = iteration;

    const pixelsOf = (all: Float32Array, b: number) =>
      toPixels({ height: options.height, width: options.width, data: all.subarray(b * pixelsPerImage, (b + 1) * pixelsPerImage) }, plan.preprocessing);
    const saveAll = async (pathFor: (out: string) => string, at: number) => {
      const all = await session.readImages();
      for (let b = 0; b < options.batch; b++) {
        const file = pathFor(plan.outPaths[b]);
        await saveImage(file, pixelsOf(all, b));
        events.onSaved?.(file, at);
      }
    };
    const checkpoint = async () => {
      const [images, state] = [await session.readImages(), await session.readOptimizerState()];
      await store.write({ iteration, images, m: state.m, v: state.v });
    };
    let lastPreview = performance.now();
    const preview = async () => {
      if (!events.onPreview || performance.now() - lastPreview < (events.previewEveryMs ?? 2000)) return;
      lastPreview = performance.now();
      const all = await session.readImages();
      await events.onPreview(Array.from({ length: options.batch }, (_, b) => pixelsOf(all, b)), iteration);
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
      const losses = await session.iterate({
        adam: plan.adam,
        stepSizes: adamStepSizes(plan.adam, iteration + 1, count),
        onProgress: (done) => events.onProgress?.(at + done, elapsed()),
      });
      if (at % plan.printEvery === 0) events.onReport?.({ iteration: at, losses, elapsedMs: elapsed() });
      iteration += count;
      events.onProgress?.(iteration, elapsed());
      // Grow or shrink the chunk so a call takes about TARGET_CALL_MS.
      const perIteration = (performance.now() - t0) / count;
      chunk = Math.max(1, Math.min(1000, Math.floor(TARGET_CALL_MS / Math.max(perIteration, 1e-3))));
      if (iteration < plan.iterations) {
        if (plan.saveEvery > 0 && iteration % plan.saveEvery === 0) await saveAll((out) => intermediatePath(out, iteration), iteration);
        if (plan.checkpointEvery > 0 && iteration % plan.checkpointEvery === 0) await checkpoint();
        await preview();
      }
    }

    const finalLosses = await session.iterate({ adam: plan.adam, stepSizes: new Float32Array(0) });
    const seconds = elapsed() / 1000;
    events.onReport?.({ iteration, losses: finalLosses, elapsedMs: elapsed() });
    await saveAll((out) => out, iteration);
    if (interrupted) await checkpoint();
    else await store.clear();
    return { iterations: iteration, startIteration, seconds, interrupted, finalLosses, outPaths: plan.outPaths };
  } finally {
    session.dispose();
  }
}

/** The smallest multiple of `every` greater than `n` (Infinity when every is 0). */
function nextMultiple(n: number, every: number): number {
  return every > 0 ? (Math.floor(n / every) + 1) * every : Infinity;
}
