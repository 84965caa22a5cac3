import { resizeBilinear, resolveSize, UserError, type Backend, type WeightSet } from '@nst/core';
import { readCheckpoint } from './checkpoint.js';
import { prepareRender, type PrepareHooks, type RenderConfig } from './job.js';
import { probeImage } from './image-file.js';
import { runOptimisation, type RenderEvents, type RenderPlan, type RenderResult } from './loop.js';

/**
 * Coarse to fine (as neural-style's multires scripts and
 * style-transfer-pytorch): each scale is a full render at its size, with
 * its own content and style targets, started from the previous scale's
 * result upsampled (bilinear); only the final scale writes files.
 */
export interface ScalePlan {
  readonly plan: RenderPlan;
  readonly size: { width: number; height: number };
  /** Whether this is the final size (the one that writes the outputs). */
  readonly final: boolean;
}

/** The smallest side the auto schedule starts from, about. */
export const AUTO_SCALE_START = 256;

/**
 * The longest sides of the coarser scales: `auto` gives sizes a factor
 * sqrt(2) apart, down to about AUTO_SCALE_START; a list is taken as given
 * (each must be smaller than the final size; the final size itself may end it).
 */
export function coarseSides(scales: RenderConfig['scales'], finalLongest: number): number[] {
  if (scales === undefined) return [];
  if (scales === 'auto') {
    const steps = Math.floor(2 * Math.log2(finalLongest / AUTO_SCALE_START) + 0.5);
    return Array.from({ length: Math.max(0, steps) }, (_, k) => Math.round(finalLongest / Math.SQRT2 ** (steps - k)));
  }
  const sides = scales.map((s) => (s.kind === 'longest' ? s.longest : Math.max(s.width, s.height)));
  if (sides[sides.length - 1] === finalLongest) sides.pop();
  for (let k = 0; k < sides.length; k++) {
    if (sides[k] >= finalLongest)
      throw new UserError(`scale ${sides[k]} is not smaller than the output (${finalLongest})`, { field: 'scales' });
    if (k > 0 && sides[k] <= sides[k - 1]) throw new UserError('scales must grow, coarse to fine', { field: 'scales' });
  }
  return sides;
}

/** Iterations of each of `count` scales. */
export function scaleIterations(config: RenderConfig, count: number): number[] {
  const given = config.scaleIterations;
  if (!given || given.length === 0) return new Array(count).fill(config.iterations);
  if (given.length === 1) return new Array(count).fill(given[0]);
  if (given.length !== count)
    throw new UserError(`${given.length} iteration counts given for ${count} scales`, { field: 'scaleIterations' });
  return [...given];
}

/**
 * One plan per scale, coarse to fine; a job without scales gives one. The
 * final (largest) scale is prepared first, with `hooks`: its memory check
 * runs before any image is decoded, and covers the coarser scales.
 */
export async function prepareScales(config: RenderConfig, weights: WeightSet, hooks: PrepareHooks = {}): Promise<ScalePlan[]> {
  const first = await probeImage(config.contents[0], 'content');
  const finalSize = resolveSize(config.size, first.width, first.height);
  const sides = coarseSides(config.scales, Math.max(finalSize.width, finalSize.height));
  const sizes = [...sides.map((longest) => resolveSize({ kind: 'longest', longest }, finalSize.width, finalSize.height)), finalSize];
  const iterations = scaleIterations(config, sizes.length);
  const last = sizes.length - 1;
  const at = (k: number): RenderConfig => ({
    ...config,
    size: { kind: 'exact', ...sizes[k] },
    iterations: iterations[k],
    // Coarse scales save nothing on their way; an interrupt still checkpoints them.
    ...(k === last ? {} : { saveEvery: 0, checkpointEvery: 0 }),
  });
  const finalPlan = await prepareRender(at(last), weights, hooks);
  const plans: ScalePlan[] = [];
  for (let k = 0; k < last; k++)
    plans.push({ plan: { ...(await prepareRender(at(k), weights)), writeOutputs: false }, size: sizes[k], final: false });
  plans.push({ plan: finalPlan, size: finalSize, final: true });
  return plans;
}

export interface ScaleEvents extends RenderEvents {
  /** Before scale `index` (0-based) of `count` starts. */
  onScale?(index: number, count: number, scale: ScalePlan): void;
  /** After a coarse scale ends. */
  onScaleDone?(index: number, result: RenderResult): void;
}

/**
 * Runs the scales in turn, each from the previous result upsampled. With
 * resume, the run continues at the scale whose checkpoint is on disk.
 * Returns the final scale's result, with seconds and evaluations summed over all scales.
 */
export async function runScales(
  backend: Backend,
  scales: readonly ScalePlan[],
  events: ScaleEvents = {},
  signal?: AbortSignal,
): Promise<RenderResult> {
  let start = 0;
  if (scales[0].plan.resume) {
    const ck = await readCheckpoint(scales[0].plan.checkpointPath);
    const at = ck ? scales.findIndex((s) => s.plan.fingerprint === ck.fingerprint) : -1;
    if (at > 0) start = at;
  }
  let previous: { images: Float32Array; size: { width: number; height: number } } | undefined;
  let seconds = 0;
  let evaluations = 0;
  let result: RenderResult | undefined;
  for (let k = start; k < scales.length; k++) {
    const { plan, size } = scales[k];
    events.onScale?.(k, scales.length, scales[k]);
    const initialImages = previous ? resizeBilinear(previous.images, plan.session.batch, previous.size, size) : plan.initialImages;
    result = await runOptimisation(backend, { ...plan, initialImages, resume: plan.resume && k === start }, events, signal);
    seconds += result.seconds;
    evaluations += result.evaluations;
    if (result.interrupted) break;
    if (!scales[k].final) events.onScaleDone?.(k, result);
    previous = { images: result.images, size };
  }
  return { ...result!, seconds, evaluations };
}
