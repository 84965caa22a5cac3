import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  adamStepSizes,
  startLbfgs,
  UserError,
  type AdamConfig,
  type Backend,
  type ImageTensor,
  type LbfgsConfig,
  type LbfgsRun,
  type LossValues,
  type Preprocessing,
  type SessionOptions,
  type Targets,
} from '@nst/core';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { saveRendered, type OutputSettings } from './output.js';

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
  /** 'adam' (the notebook's) or 'lbfgs' (neural-style's; then `lbfgs` configures it). */
  readonly optimizer?: 'adam' | 'lbfgs';
  readonly lbfgs?: LbfgsConfig;
  /** Write the outputs at the end (false: a coarse scale, whose result only feeds the next). */
  readonly writeOutputs?: boolean;
  /** Bit depth, colour recombination, alpha and colour profile of the files written. */
  readonly output?: OutputSettings;
  /** What the job does that the user should know of (colour profile kept or converted, alpha passed through). */
  readonly notes?: readonly string[];
  /** Host memory the optimiser needs besides the session (L-BFGS's pairs): part of the job's memory estimate. */
  readonly optimizerHostBytes?: number;
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
  if (plan.initialImages.length !== options.batch * pixelsPerImage) throw new Error('initialImages has the wrong length');
  if (plan.outPaths.length !== options.batch) throw new Error('one output path per batch item is needed');

  const session = await backend.createSession(options);
  try {
    await session.setTargets(plan.targets);
    let iteration = 0;
    const ck = plan.resume ? await readCheckpoint(plan.checkpointPath) : undefined;
    if (ck) {
      if (ck.fingerprint !== plan.fingerprint)
        throw new UserError(`checkpoint '${plan.checkpointPath}' belongs to a different job (inputs, size, loss or weights differ)`, { code: 'conflict', field: 'resume' });
      if (ck.images.length !== plan.initialImages.length) throw new UserError(`checkpoint '${plan.checkpointPath}' has the wrong size`, { code: 'conflict', field: 'resume' });
      await session.setImages(ck.images);
      await session.writeOptimizerState({ m: ck.m, v: ck.v });
      iteration = Math.min(ck.iteration, plan.iterations);
      events.onResumed?.(iteration);
    } else {
      await session.setImages(plan.initialImages);
    }
    const startIteration = iteration;
    // L-BFGS starts from the images just set; a resumed run starts a new history.
    const lbfgs: LbfgsRun | undefined = plan.optimizer === 'lbfgs' ? await startLbfgs(session, plan.lbfgs ?? { history: 100 }) : undefined;

    const saveAll = async (pathFor: (out: string) => string, at: number) => {
      const all = await session.readImages();
      for (let b = 0; b < options.batch; b++) {
        const tensor: ImageTensor = {
          height: options.height,
          width: options.width,
          data: all.subarray(b * pixelsPerImage, (b + 1) * pixelsPerImage),
        };
        const file = pathFor(plan.outPaths[b]);
        await saveRendered(file, tensor, plan.preprocessing, plan.output ?? {}, b);
        events.onSaved?.(file, at);
      }
    };
    const checkpoint = async () => {
      const [images, state] = [await session.readImages(), await session.readOptimizerState()];
      await writeCheckpoint(plan.checkpointPath, { fingerprint: plan.fingerprint, iteration, images, m: state.m, v: state.v });
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
      const onProgress = (done: number) => events.onProgress?.(at + done, elapsed());
      const losses = lbfgs
        ? await lbfgs.iterate(count, onProgress)
        : await session.iterate({ adam: plan.adam, stepSizes: adamStepSizes(plan.adam, iteration + 1, count), onProgress });
      if (at % plan.printEvery === 0) events.onReport?.({ iteration: at, losses, elapsedMs: elapsed() });
      iteration += count;
      events.onProgress?.(iteration, elapsed());
      // Grow or shrink the chunk so a call takes about TARGET_CALL_MS.
      const perIteration = (performance.now() - t0) / count;
      chunk = Math.max(1, Math.min(1000, Math.floor(TARGET_CALL_MS / Math.max(perIteration, 1e-3))));
      if (iteration < plan.iterations) {
        if (plan.saveEvery > 0 && iteration % plan.saveEvery === 0) await saveAll((out) => intermediatePath(out, iteration), iteration);
        if (plan.checkpointEvery > 0 && iteration % plan.checkpointEvery === 0) await checkpoint();
      }
    }

    const finalLosses = await session.iterate({ adam: plan.adam, stepSizes: new Float32Array(0) });
    const seconds = elapsed() / 1000;
    events.onReport?.({ iteration, losses: finalLosses, elapsedMs: elapsed() });
    if (plan.writeOutputs !== false || interrupted) await saveAll((out) => out, iteration);
    if (interrupted) await checkpoint();
    else await fs.rm(plan.checkpointPath, { force: true });
    const evaluations = lbfgs ? lbfgs.evaluations : iteration - startIteration;
    const images = await session.readImages();
    return { iterations: iteration, evaluations, startIteration, seconds, interrupted, finalLosses, outPaths: plan.outPaths, images };
  } finally {
    session.dispose();
  }
}

/** The smallest multiple of `every` greater than `n` (Infinity when every is 0). */
function nextMultiple(n: number, every: number): number {
  return every > 0 ? (Math.floor(n / every) + 1) * every : Infinity;
}
