import sharp from 'sharp';
import { HttpError } from './errors.js';
import type { BlobStore } from './store.js';

/** The formats a result can be downloaded in (GET /api/jobs/:id/result?format=...). */
export const RESULT_FORMATS = {
  png: { type: 'image/png', ext: 'png' },
  jpeg: { type: 'image/jpeg', ext: 'jpg' },
  tiff: { type: 'image/tiff', ext: 'tif' },
} as const;
export type ResultFormat = keyof typeof RESULT_FORMATS;

export function resultFormat(given: string | null): ResultFormat {
  const format = (given ?? 'png').toLowerCase().replace(/^jpg$/, 'jpeg').replace(/^tif$/, 'tiff');
  if (!(format in RESULT_FORMATS)) throw new HttpError(400, `'${given}' is not one of ${Object.keys(RESULT_FORMATS).join(', ')}`, 'format');
  return format as ResultFormat;
}

/** A stored result (PNG, 8 or 16 bits) in `format`: JPEG flattened on white at quality 92, TIFF with LZW, keeping the bit depth. */
export async function convertResult(png: Uint8Array, format: ResultFormat): Promise<Uint8Array> {
  if (format === 'png') return png;
  const image = sharp(png).keepIccProfile();
  if (format === 'jpeg') return image.flatten({ background: '#ffffff' }).jpeg({ quality: 92 }).toBuffer();
  return image.tiff({ compression: 'lzw' }).toBuffer();
}

/** The longest side of a thumbnail, in pixels. */
export const THUMB_SIDE = 160;

/**
 * A small JPEG of a stored image (an input or a result), made once and kept
 * in the store beside it (`thumbs/...`), so that the job list stays cheap
 * however often it is drawn. Undefined when the image is not in the store.
 */
export async function thumbnail(store: BlobStore, key: string): Promise<Uint8Array | undefined> {
  const thumbKey = `thumbs/${key.replace(/\//g, '-')}.jpg`;
  const kept = await store.get(thumbKey);
  if (kept) return kept;
  const bytes = await store.get(key);
  if (!bytes) return undefined;
  const jpeg = await sharp(bytes, { limitInputPixels: 100_000_000 })
    .rotate()
    .resize(THUMB_SIDE, THUMB_SIDE, { fit: 'inside', withoutEnlargement: true })
    .flatten({ background: '#ffffff' })
    .jpeg({ quality: 75 })
    .toBuffer();
  await store.put(thumbKey, jpeg);
  return jpeg;
}
