import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from './atomic.js';
import { UserError } from './errors.js';
import type { ImageTensor } from './backend.js';
import type { Preprocessing } from './weights.js';

/** 8-bit RGB pixels, row-major, 3 bytes per pixel. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** Output formats sharp writes, by extension. */
const OUTPUT_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.avif']);

sharp.cache(false);

/** Size of an image file without decoding it. `flag` names the option in errors. */
export async function probeImage(file: string, flag: string): Promise<{ width: number; height: number }> {
  await assertReadable(file, flag);
  try {
    const meta = await sharp(file).metadata();
    if (!meta.width || !meta.height) throw new Error('no dimensions');
    // EXIF orientations 5-8 swap the axes once auto-rotated.
    const swap = (meta.orientation ?? 1) >= 5;
    return swap ? { width: meta.height, height: meta.width } : { width: meta.width, height: meta.height };
  } catch (e) {
    throw unreadable(file, flag, e);
  }
}

/**
 * Decodes an image file into 8-bit sRGB, applying its EXIF rotation and
 * dropping alpha (flattened on white), resized to exactly width x height
 * when given (Lanczos, ignoring aspect, as the notebook does with 400x300).
 */
export async function loadImage(file: string, flag: string, size?: { width: number; height: number }): Promise<RgbImage> {
  await assertReadable(file, flag);
  try {
    let pipeline = sharp(file).rotate().flatten({ background: '#ffffff' }).toColourspace('srgb');
    if (size) pipeline = pipeline.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' });
    const { data, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    throw unreadable(file, flag, e);
  }
}

/** Writes an image atomically; the format follows the extension. */
export async function saveImage(file: string, image: RgbImage, flag = '--out'): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (!OUTPUT_EXTENSIONS.has(ext))
    throw new UserError(`${flag}: '${file}' has no supported image extension (${[...OUTPUT_EXTENSIONS].join(', ')})`);
  try {
    await writeFileAtomic(file, async (tmp) => {
      await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length), {
        raw: { width: image.width, height: image.height, channels: 3 },
      }).toFile(tmp);
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code) throw new UserError(`${flag}: cannot write '${file}': ${err.code} ${err.message.split('\n')[0]}`);
    throw e;
  }
}

/** Checks early that an output path can be written, so a long run does not fail at its end. */
export async function assertWritable(file: string, flag: string): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (!OUTPUT_EXTENSIONS.has(ext))
    throw new UserError(`${flag}: '${file}' has no supported image extension (${[...OUTPUT_EXTENSIONS].join(', ')})`);
  const dir = path.dirname(path.resolve(file));
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new UserError(`${flag}: '${dir}' is not a folder`);
    await fs.access(dir, fs.constants.W_OK);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${flag}: cannot write into folder '${dir}' (${code === 'ENOENT' ? 'it does not exist' : code})`);
  }
  try {
    const st = await fs.stat(file);
    if (st.isDirectory()) throw new UserError(`${flag}: '${file}' is a folder`);
    await fs.access(file, fs.constants.W_OK);
  } catch (e) {
    if (e instanceof UserError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UserError(`${flag}: '${file}' is not writable`);
  }
}

async function assertReadable(file: string, flag: string): Promise<void> {
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new UserError(`${flag}: '${file}' is not a file`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${flag}: ${code === 'ENOENT' ? 'no such file' : `cannot open (${code})`} '${file}'`);
  }
}

function unreadable(file: string, flag: string, e: unknown): UserError {
  if (e instanceof UserError) return e;
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
  return new UserError(`${flag}: cannot read '${file}' as an image (${msg})`, { cause: e });
}

/**
 * Pixels (RGB, 0..255) to the network's input space: channel order, scale,
 * mean and std of the weight set. The inverse is toPixels.
 */
export function toNetworkSpace(image: RgbImage, pre: Preprocessing): ImageTensor {
  const n = image.width * image.height;
  const out = new Float32Array(n * 3);
  const order = pre.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const src = order[c];
    const mul = pre.scale / 255 / pre.std[c];
    const add = -pre.mean[c] / pre.std[c];
    for (let i = 0; i < n; i++) out[3 * i + c] = image.data[3 * i + src] * mul + add;
  }
  return { width: image.width, height: image.height, data: out };
}

/** Network space back to RGB pixels, rounded and clipped to 0..255. */
export function toPixels(tensor: ImageTensor, pre: Preprocessing): RgbImage {
  const n = tensor.width * tensor.height;
  const out = new Uint8Array(n * 3);
  const order = pre.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const dst = order[c];
    const mul = (pre.std[c] * 255) / pre.scale;
    const add = (pre.mean[c] * 255) / pre.scale;
    for (let i = 0; i < n; i++) {
      const v = Math.round(tensor.data[3 * i + c] * mul + add);
      out[3 * i + dst] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return { width: tensor.width, height: tensor.height, data: out };
}

/**
 * How many network-space units one pixel level (1/255 of the range) is, per
 * network channel: 1 for the Caffe sets, about 1/57 for torchvision's.
 */
export function pixelUnit(pre: Preprocessing): [number, number, number] {
  return [0, 1, 2].map((c) => pre.scale / 255 / pre.std[c]) as [number, number, number];
}
