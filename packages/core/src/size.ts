/** The requested output size: exact (`400x300`, width x height) or longest side (`512`). */
export type SizeSpec = { kind: 'exact'; width: number; height: number } | { kind: 'longest'; longest: number };

/** The largest side a size may have. */
export const MAX_SIDE = 16384;

/** Resolves a size spec against an image's own size (for `longest`, keeping its aspect ratio). */
export function resolveSize(spec: SizeSpec, imageWidth: number, imageHeight: number): { width: number; height: number } {
  if (spec.kind === 'exact') return { width: spec.width, height: spec.height };
  const scale = spec.longest / Math.max(imageWidth, imageHeight);
  return {
    width: Math.max(1, Math.round(imageWidth * scale)),
    height: Math.max(1, Math.round(imageHeight * scale)),
  };
}
