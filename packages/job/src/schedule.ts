import { MAX_SIDE, resolveSize, UserError, type SizeSpec } from '@nst/core';
import type { JobConfig } from './options.js';

/**
 * The sizes a job works at. Coarse to fine (as neural-style's multires
 * scripts and style-transfer-pytorch): each scale is a full optimisation at
 * its size, with its own content and style targets, started from the
 * previous scale's result upsampled; only the final scale writes the output.
 * A job without scales has one step.
 */
export interface Size {
  readonly width: number;
  readonly height: number;
}

export interface ScaleStep {
  readonly size: Size;
  readonly iterations: number;
  /** The size each style image is resized to at this scale. */
  readonly styleSizes: readonly Size[];
}

/** The smallest side the auto schedule starts from, about. */
export const AUTO_SCALE_START = 256;

/**
 * The longest sides of the coarser scales: `auto` gives sizes a factor
 * sqrt(2) apart, down to about AUTO_SCALE_START; a list is taken as given
 * (each must be smaller than the final size; the final size itself may end it).
 */
export function coarseSides(scales: JobConfig['scales'], finalLongest: number): number[] {
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
export function scaleIterations(job: Pick<JobConfig, 'iterations' | 'scaleIterations'>, count: number): number[] {
  const given = job.scaleIterations;
  if (!given || given.length === 0) return new Array(count).fill(job.iterations);
  if (given.length === 1) return new Array(count).fill(given[0]);
  if (given.length !== count)
    throw new UserError(`${given.length} iteration counts given for ${count} scales`, { field: 'scaleIterations' });
  return [...given];
}

/** The size each style image is resized to when the output is `size` (`styleScale`: a factor of its longest side). */
export function styleSizesAt(job: Pick<JobConfig, 'styleScale' | 'style'>, size: Size, styleDims: readonly Size[]): Size[] {
  if (job.styleScale === undefined) return job.style.map(() => size);
  const longest = Math.max(1, Math.round(job.styleScale * Math.max(size.width, size.height)));
  if (longest > MAX_SIDE)
    throw new UserError(
      `${job.styleScale} would resize the style images to ${longest} pixels on their longest side (at most ${MAX_SIDE})`,
      { code: 'too-large', field: 'styleScale' },
    );
  return styleDims.map((own) => resolveSize({ kind: 'longest', longest }, own.width, own.height));
}

/**
 * The job's output size and scale steps, from the sizes of its images
 * (`styleDims` matter only with styleScale). Every front end runs this
 * check before a job is queued or read: the HTTP API with the uploads'
 * decoded sizes, the others with the files' headers.
 */
export function planScales(job: JobConfig, contentDims: Size, styleDims: readonly Size[]): { size: Size; steps: ScaleStep[] } {
  const size = resolveSize(job.size, contentDims.width, contentDims.height, job.fit);
  if (Math.max(size.width, size.height) > MAX_SIDE)
    throw new UserError(
      `a ${contentDims.width}x${contentDims.height} photo around ${describeSize(job.size)} would be ${size.width}x${size.height} (at most ${MAX_SIDE} a side)`,
      { code: 'too-large', field: 'size' },
    );
  const sides = coarseSides(job.scales, Math.max(size.width, size.height));
  const sizes = [...sides.map((longest) => resolveSize({ kind: 'longest', longest }, size.width, size.height)), size];
  const iterations = scaleIterations(job, sizes.length);
  const steps = sizes.map((s, k) => ({ size: s, iterations: iterations[k], styleSizes: styleSizesAt(job, s, styleDims) }));
  return { size, steps };
}

/** The schedule as results report it: each scale's size and iterations. */
export function describeSteps(steps: readonly ScaleStep[]): { size: string; iterations: number }[] {
  return steps.map((s) => ({ size: `${s.size.width}x${s.size.height}`, iterations: s.iterations }));
}

function describeSize(size: SizeSpec): string {
  return size.kind === 'exact' ? `${size.width}x${size.height}` : `a longest side of ${size.longest}`;
}

/**
 * One line when the output does not have the photo's shape, or not the
 * size asked for: `fit` stretched, cropped or padded the photo, or kept its
 * shape in a size other than WxH. Undefined when the photo keeps its shape
 * at the size asked (a longest side, or WxH of the photo's aspect).
 */
export function sizeNote(job: Pick<JobConfig, 'size' | 'fit' | 'content'>, contentDims: Size, size: Size): string | undefined {
  if (job.size.kind !== 'exact') return undefined;
  const own = resolveSize(job.size, contentDims.width, contentDims.height, 'inside');
  const asked = `${job.size.width}x${job.size.height}`;
  if (own.width === job.size.width && own.height === job.size.height) return undefined;
  const photo = `'${job.content}' (${contentDims.width}x${contentDims.height})`;
  const whole = `${own.width}x${own.height}`;
  switch (job.fit) {
    case 'fill':
      return `size: ${photo} is stretched to ${asked} (fit fill; fit inside keeps its shape at ${whole})`;
    case 'cover':
      return `size: ${photo} is cropped to ${asked} (fit cover; fit inside keeps all of it at ${whole})`;
    case 'contain':
      return `size: ${photo} is padded to ${asked} (fit contain; fit inside gives ${whole} without padding)`;
    default:
      return `size: ${photo} keeps its shape at ${size.width}x${size.height} (fit ${job.fit} ${asked}; fit contain, cover or fill give ${asked})`;
  }
}
