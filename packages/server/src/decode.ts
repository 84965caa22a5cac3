import sharp from 'sharp';
import { HttpError } from './errors.js';
import type { Upload } from './multipart.js';

export interface DecodeLimits {
  /** Pixels one image may have. */
  readonly inputPixels: number;
  /** Pixels the images of one request may have together. */
  readonly requestPixels: number;
}

/**
 * Bounds the pixels being decoded at once, all requests together, so that
 * the memory decoding takes is bounded however many requests come in. A
 * decode waits until its pixels fit. Waiting decodes start in order, but one
 * that fits may pass one that does not yet (a small submission need not wait
 * behind large ones), until the one passed has waited `patienceMs`: then
 * nobody passes it, so that a stream of small decodes cannot starve a large
 * one.
 */
export class PixelGate {
  private inUse = 0;
  private readonly waiting: { need: number; since: number; start: () => void }[] = [];
  constructor(
    readonly capacity: number,
    private readonly patienceMs = 1000,
  ) {}

  async run<T>(pixels: number, task: () => Promise<T>): Promise<T> {
    const need = Math.min(pixels, this.capacity);
    await new Promise<void>((start) => {
      this.waiting.push({ need, since: Date.now(), start });
      this.admit();
    });
    try {
      return await task();
    } finally {
      this.inUse -= need;
      this.admit();
    }
  }

  private admit(): void {
    for (let k = 0; k < this.waiting.length; ) {
      const w = this.waiting[k];
      if (this.inUse + w.need <= this.capacity) {
        this.waiting.splice(k, 1);
        this.inUse += w.need;
        w.start();
      } else if (Date.now() - w.since > this.patienceMs) return;
      else k++;
    }
  }
}

/**
 * Checks a request's images before a job is queued, so that a broken image is
 * refused now, not on a worker: first every header (cheap: the pixel counts
 * against the limits, before anything is decoded), then a full decode of
 * each through `gate`. Returns each image's size as displayed (EXIF
 * orientation applied).
 */
export async function checkImages(
  uploads: readonly Upload[],
  limits: DecodeLimits,
  gate: PixelGate,
): Promise<{ width: number; height: number }[]> {
  const headers = await Promise.all(uploads.map(readHeader));
  let total = 0;
  headers.forEach((h, k) => {
    const pixels = h.width * h.height;
    if (pixels > limits.inputPixels) throw new HttpError(413, `the image has more than ${limits.inputPixels} pixels`, uploads[k].field);
    total += pixels;
  });
  if (total > limits.requestPixels)
    throw new HttpError(413, `the images have ${total} pixels in all, more than ${limits.requestPixels}`, 'style');
  await Promise.all(uploads.map((u, k) => gate.run(headers[k].width * headers[k].height, () => decode(u, limits.inputPixels))));
  return headers;
}

async function readHeader(u: Upload): Promise<{ width: number; height: number }> {
  try {
    const meta = await sharp(u.bytes).metadata();
    return meta.autoOrient;
  } catch (e) {
    throw unreadable(u, e);
  }
}

/**
 * Decodes every pixel (truncated or corrupt data fails here) into one 8-bit
 * band: the output is a byte a pixel, however deep and wide the image, so a
 * decode costs little more than its pixel count.
 */
async function decode(u: Upload, inputPixels: number): Promise<void> {
  try {
    await sharp(u.bytes, { limitInputPixels: inputPixels, failOn: 'error' }).extractChannel(0).raw({ depth: 'uchar' }).toBuffer();
  } catch (e) {
    throw unreadable(u, e);
  }
}

function unreadable(u: Upload, e: unknown): HttpError {
  const msg = (e as Error).message.split('\n')[0];
  if (/pixel limit/i.test(msg)) return new HttpError(413, 'the image has too many pixels', u.field);
  return new HttpError(400, `not an image this server can read (${msg})`, u.field);
}
