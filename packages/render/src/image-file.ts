import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { UserError, type RgbImage } from '@nst/core';
import { writeFileAtomic } from '@nst/files';

/** Output formats sharp writes, by extension. */
export const OUTPUT_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.avif'] as const;

sharp.cache(false);

/** Size of an image file without decoding it. `field` names the job field in errors. */
export async function probeImage(file: string, field: string): Promise<{ width: number; height: number }> {
  await assertReadable(file, field);
  try {
    const meta = await sharp(file).metadata();
    if (!meta.width || !meta.height) throw new Error('no dimensions');
    // EXIF orientations 5-8 swap the axes once auto-rotated.
    const swap = (meta.orientation ?? 1) >= 5;
    return swap ? { width: meta.height, height: meta.width } : { width: meta.width, height: meta.height };
  } catch (e) {
    throw unreadable(file, field, e);
  }
}

/**
 * Decodes an image file into 8-bit sRGB, applying its EXIF rotation and
 * dropping alpha (flattened on white), resized to exactly width x height
 * when given (Lanczos, ignoring aspect, as the notebook does with 400x300).
 */
export async function loadImage(file: string, field: string, size?: { width: number; height: number }): Promise<RgbImage> {
  await assertReadable(file, field);
  try {
    let pipeline = sharp(file).rotate().flatten({ background: '#ffffff' }).toColourspace('srgb');
    if (size) pipeline = pipeline.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' });
    const { data, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    throw unreadable(file, field, e);
  }
}

/** Writes an image atomically; the format follows the extension. */
export async function saveImage(file: string, image: RgbImage, field = 'out'): Promise<void> {
  checkOutputExtension(file, field);
  try {
    await writeFileAtomic(file, async (tmp) => {
      let encoder = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length), {
        raw: { width: image.width, height: image.height, channels: 3 },
      });
      // sharp's TIFF default is JPEG inside the TIFF: lossy. A .tif output is
      // chosen for exact pixels, so use deflate (lossless) with the horizontal predictor.
      if (/^\.tiff?$/i.test(path.extname(file))) encoder = encoder.tiff({ compression: 'deflate', predictor: 'horizontal' });
      await encoder.toFile(tmp);
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code)
      throw new UserError(`cannot write '${file}': ${err.code} ${err.message.split('\n')[0]}`, { code: 'unwritable', field, cause: e });
    throw e;
  }
}

function checkOutputExtension(file: string, field: string): void {
  const ext = path.extname(file).toLowerCase();
  if (!(OUTPUT_EXTENSIONS as readonly string[]).includes(ext))
    throw new UserError(`'${file}' has no supported image extension (${OUTPUT_EXTENSIONS.join(', ')})`, { field });
}

/**
 * Checks early that an output path can be written, so a long run does not
 * fail at its end: a name that ends in a slash, a folder or a device in its
 * place, or a folder that does not take new files (read-only, /proc, ...) is
 * a UserError now. The folder is probed by creating and removing a file,
 * since permission bits alone say nothing for root or for pseudo file systems.
 */
export async function assertWritable(file: string, field: string): Promise<void> {
  const unwritable = (detail: string) => new UserError(detail, { code: 'unwritable', field });
  if (file.endsWith('/') || file.endsWith(path.sep)) throw unwritable(`'${file}' ends with a slash: it names a folder, not a file`);
  checkOutputExtension(file, field);
  await assertFileWritable(file, unwritable);
}

/** The checks of assertWritable without the image extension (checkpoints). */
export async function assertFileWritable(file: string, unwritable: (detail: string) => UserError): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw unwritable(`'${dir}' is not a folder`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw unwritable(`cannot write into folder '${dir}' (${code === 'ENOENT' ? 'it does not exist' : code})`);
  }
  try {
    const st = await fs.lstat(file);
    if (st.isDirectory()) throw unwritable(`'${file}' is a folder`);
    if (!st.isFile() && !st.isSymbolicLink()) throw unwritable(`'${file}' is not a regular file`);
    if (st.isSymbolicLink()) {
      const target = await fs.stat(file).catch(() => undefined);
      if (target && !target.isFile()) throw unwritable(`'${file}' is a link to something that is not a regular file`);
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw unwritable(`cannot write '${file}': a part of its folder path is a file`);
    if (code !== 'ENOENT') throw unwritable(`cannot write '${file}' (${code})`);
  }
  const probe = path.join(dir, `.nst-write-test.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    const fh = await fs.open(probe, 'wx');
    await fh.close();
  } catch (e) {
    throw unwritable(`cannot write into folder '${dir}' (${(e as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
  await fs.rm(probe, { force: true });
}

async function assertReadable(file: string, field: string): Promise<void> {
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new UserError(`'${file}' is not a file`, { code: 'unreadable', field });
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw code === 'ENOENT'
      ? new UserError(`no such file '${file}'`, { code: 'not-found', field })
      : new UserError(`cannot open '${file}' (${code})`, { code: 'unreadable', field });
  }
}

function unreadable(file: string, field: string, e: unknown): UserError {
  if (e instanceof UserError) return e;
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
  return new UserError(`cannot read '${file}' as an image (${msg})`, { code: 'unreadable', field, cause: e });
}
