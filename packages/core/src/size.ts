import { UserError } from './errors.js';

/** The requested output size: exact (`400x300`, width x height) or longest side (`512`). */
export type SizeSpec = { kind: 'exact'; width: number; height: number } | { kind: 'longest'; longest: number };

/** The notebook's size: 400 wide, 300 high. */
export const DEFAULT_SIZE: SizeSpec = { kind: 'exact', width: 400, height: 300 };

const MAX_SIDE = 16384;

export function parseSize(text: string, flag = '--size'): SizeSpec {
  const t = text.trim().toLowerCase();
  const exact = /^(\d+)x(\d+)$/.exec(t);
  const checkSide = (n: number, what: string) => {
    if (!Number.isInteger(n) || n < 1 || n > MAX_SIDE) throw new UserError(`${flag}: ${what} ${n} is out of range 1..${MAX_SIDE}`);
  };
  if (exact) {
    const width = Number(exact[1]);
    const height = Number(exact[2]);
    checkSide(width, 'width');
    checkSide(height, 'height');
    return { kind: 'exact', width, height };
  }
  if (/^\d+$/.test(t)) {
    const longest = Number(t);
    checkSide(longest, 'size');
    return { kind: 'longest', longest };
  }
  throw new UserError(`${flag}: '${text}' is not WIDTHxHEIGHT (e.g. 400x300) or a longest side in pixels (e.g. 512)`);
}

/** Resolves a size spec against an image's own size (for `longest`, keeping its aspect ratio). */
export function resolveSize(spec: SizeSpec, imageWidth: number, imageHeight: number): { width: number; height: number } {
  if (spec.kind === 'exact') return { width: spec.width, height: spec.height };
  const scale = spec.longest / Math.max(imageWidth, imageHeight);
  return {
    width: Math.max(1, Math.round(imageWidth * scale)),
    height: Math.max(1, Math.round(imageHeight * scale)),
  };
}
