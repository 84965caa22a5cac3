/** The requested output size: exact (`400x300`, width x height) or longest side (`512`). */
export type SizeSpec = { kind: 'exact'; width: number; height: number } | { kind: 'longest'; longest: number };

/**
 * How an image meets an exact size WxH, as sharp's `fit` (and CSS's
 * object-fit) name it:
 *  - inside: the largest size within WxH with the image's aspect (no crop, no padding);
 *  - outside: the smallest size covering WxH with the image's aspect;
 *  - contain: WxH, the image inside it, padded;
 *  - cover: WxH, the image covering it, cropped;
 *  - fill: WxH, the image stretched.
 * A longest-side size keeps the aspect whatever the fit.
 */
export type Fit = 'inside' | 'outside' | 'contain' | 'cover' | 'fill';
export const FITS: readonly Fit[] = ['inside', 'contain', 'cover', 'fill', 'outside'];

/** The default size: the longest side 400, the aspect kept (the notebook's 400x300 for its 4:3 photos). */
export const DEFAULT_SIZE: SizeSpec = { kind: 'longest', longest: 400 };

/** The largest side a size may have. */
export const MAX_SIDE = 16384;

/**
 * Resolves a size spec against an image's own size: a longest side keeps the
 * image's aspect; an exact size is taken as it is by contain, cover and fill,
 * and scaled to the image's aspect by inside (within it) and outside (around it).
 */
export function resolveSize(
  spec: SizeSpec,
  imageWidth: number,
  imageHeight: number,
  fit: Fit = 'inside',
): { width: number; height: number } {
  if (spec.kind === 'exact' && (fit === 'contain' || fit === 'cover' || fit === 'fill')) return { width: spec.width, height: spec.height };
  const scale =
    spec.kind === 'longest'
      ? spec.longest / Math.max(imageWidth, imageHeight)
      : (fit === 'inside' ? Math.min : Math.max)(spec.width / imageWidth, spec.height / imageHeight);
  return {
    width: Math.max(1, Math.round(imageWidth * scale)),
    height: Math.max(1, Math.round(imageHeight * scale)),
  };
}
