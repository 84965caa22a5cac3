import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { UserError, type RgbImage } from '@nst/core';
import { writeFileAtomic } from '@nst/files';
import { NST_VERSION } from './version.js';

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
 * How a decoded image meets the size it is loaded at: stretched to it
 * (fill: the size already has the image's aspect, or the user asked for a
 * stretch), cropped to it around the centre (cover), or inside it padded
 * with white, transparent where an alpha channel is kept (contain).
 */
export type LoadFit = 'fill' | 'cover' | 'contain';

function resizeTo(size: { width: number; height: number }, fit: LoadFit = 'fill') {
  return { width: size.width, height: size.height, fit, kernel: 'lanczos3' as const, background: { r: 255, g: 255, b: 255, alpha: 0 } };
}

/**
 * Decodes an image file into 8-bit sRGB, applying its EXIF rotation and
 * dropping alpha (flattened on white unless options.flatten is false), resized to exactly width x height
 * when given (Lanczos; options.fit says how, default fill: stretched, as the notebook does with 400x300).
 */
export async function loadImage(
  file: string,
  field: string,
  size?: { width: number; height: number },
  options: { flatten?: boolean; fit?: LoadFit } = {},
): Promise<RgbImage> {
  await assertReadable(file, field);
  try {
    // flatten: false keeps the straight colours of translucent pixels (when the alpha channel is passed through).
    let pipeline = sharp(file).rotate();
    if (options.flatten !== false) pipeline = pipeline.flatten({ background: '#ffffff' });
    pipeline = pipeline.toColourspace('srgb');
    if (size) pipeline = pipeline.resize(resizeTo(size, options.fit));
    const { data, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    throw unreadable(file, field, e);
  }
}

/** The luminance of a mask's pixel, in thousandths (Y' of YIQ, as colour.ts's luminance: 0.299 R' + 0.587 G' + 0.114 B'). */
export const MASK_LUMA = [299, 587, 114] as const;

/**
 * Decodes a mask file (any format loadImage takes) into weights in [0, 1],
 * height x width, row-major, float32: each pixel's luminance (MASK_LUMA, of
 * 8-bit sRGB) times its alpha where it has an alpha channel, 1 for white.
 * EXIF rotation applied; resized to `size` as `fit` says (loadImage's fits;
 * contain's padding weighs 0) with a triangle filter widened by the
 * reduction, which has no negative lobes: the weights stay within the file's
 * own range (Lanczos would ring past 0 and 1 at a hard edge). Resized as
 * colour and alpha (alpha-weighted), so the weights are those of the
 * resized product. Decoding is bounded as loadImage's (sharp's pixel limit).
 */
export async function loadMask(
  file: string,
  field: string,
  size: { width: number; height: number },
  fit: LoadFit = 'fill',
): Promise<Float32Array> {
  await assertReadable(file, field);
  try {
    const { data, info } = await sharp(file)
      .rotate()
      .toColourspace('srgb')
      .ensureAlpha()
      .resize({ ...resizeTo(size, fit), kernel: 'linear', background: { r: 0, g: 0, b: 0, alpha: 0 } })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4 || info.width !== size.width || info.height !== size.height)
      throw new Error(`decoded to ${info.width}x${info.height} with ${info.channels} channels`);
    const mask = new Float32Array(size.width * size.height);
    for (let p = 0, i = 0; p < mask.length; p++, i += 4) {
      // In integers, so that white is exactly 1 (a white mask is no mask: core's effectiveMask).
      const luma = MASK_LUMA[0] * data[i] + MASK_LUMA[1] * data[i + 1] + MASK_LUMA[2] * data[i + 2];
      mask[p] = (luma * data[i + 3]) / (1000 * 255 * 255);
    }
    return mask;
  } catch (e) {
    throw unreadable(file, field, e);
  }
}

/** Writes an image atomically; the format follows the extension. */
export async function saveImage(file: string, image: RgbImage, field = 'out'): Promise<void> {
  await savePixels(file, { ...image, channels: 3 }, {}, field);
}

/** Output pixels: 8- or 16-bit, RGB or RGBA (straight alpha), sRGB. */
export interface OutputPixels {
  readonly width: number;
  readonly height: number;
  readonly channels: 3 | 4;
  readonly data: Uint8Array | Uint16Array;
}

/** Extensions that store 16 bits per channel. */
export const SIXTEEN_BIT_EXTENSIONS = ['.png', '.tif', '.tiff'] as const;

/**
 * Writes sRGB pixels atomically, tagged sRGB (16-bit: untagged, i.e. sRGB);
 * with `icc` (a profile's bytes, 8-bit only), converted to that profile and
 * embedded instead. TIFFs are LZW
 * compressed (sharp's default, JPEG, is lossy and 8-bit).
 */
export async function savePixels(
  file: string,
  image: OutputPixels,
  options: { icc?: Uint8Array; settings?: string } = {},
  field = 'out',
): Promise<void> {
  checkOutputExtension(file, field);
  const sixteen = image.data instanceof Uint16Array;
  if (sixteen && options.icc)
    throw new UserError('a kept colour profile needs 8 bits per channel', { code: 'unsupported', field: 'iccProfile' });
  const ext = path.extname(file).toLowerCase();
  let profileDir: string | undefined;
  try {
    let profile = 'srgb';
    if (options.icc) {
      profileDir = await fs.mkdtemp(path.join(os.tmpdir(), 'nst-icc-'));
      profile = path.join(profileDir, 'profile.icc');
      await fs.writeFile(profile, options.icc);
    }
    await writeFileAtomic(file, async (tmp) => {
      let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } });
      // libvips' ICC transform of rgb16 data shifts saturated colours (0 -> 59 in blue on pure
      // colours, sharp 0.35): 16-bit files are written untagged, which readers take as sRGB.
      if (sixteen) pipeline = pipeline.toColourspace('rgb16');
      else pipeline = pipeline.withIccProfile(profile);
      // sharp's TIFF default is JPEG inside the TIFF: lossy. A .tif output is chosen for exact pixels: LZW.
      if (ext === '.tif' || ext === '.tiff') pipeline = pipeline.tiff({ compression: 'lzw', predictor: 'horizontal' });
      if (options.settings !== undefined && ext !== '.png') pipeline = pipeline.withXmp(xmpPacket(options.settings));
      await pipeline.toFile(tmp);
      if (options.settings !== undefined && ext === '.png') await fs.writeFile(tmp, withPngText(await fs.readFile(tmp), options.settings));
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code)
      throw new UserError(`cannot write '${file}': ${err.code} ${err.message.split('\n')[0]}`, { code: 'unwritable', field, cause: e });
    throw e;
  } finally {
    if (profileDir) await fs.rm(profileDir, { recursive: true, force: true });
  }
}

/** The image's alpha channel at `size` (EXIF rotation applied, resized as loadImage with the same `fit`), or undefined when it has none. */
export async function loadAlpha(
  file: string,
  field: string,
  size: { width: number; height: number },
  fit?: LoadFit,
): Promise<Uint8Array | undefined> {
  try {
    if (!(await sharp(file).metadata()).hasAlpha) return undefined;
    const { data } = await sharp(file).rotate().resize(resizeTo(size, fit)).extractChannel(3).raw().toBuffer({ resolveWithObject: true });
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  } catch (e) {
    throw unreadable(file, field, e);
  }
}

/** The image's embedded ICC profile and its description, if any. */
export async function probeColourProfile(file: string, field: string): Promise<{ icc: Uint8Array; description: string } | undefined> {
  try {
    const icc = (await sharp(file).metadata()).icc;
    return icc ? { icc: new Uint8Array(icc), description: iccDescription(icc) } : undefined;
  } catch (e) {
    throw unreadable(file, field, e);
  }
}

/** The 'desc' tag of an ICC profile (v2 'desc' or v4 'mluc'), or 'unnamed'. */
export function iccDescription(icc: Uint8Array): string {
  const view = new DataView(icc.buffer, icc.byteOffset, icc.byteLength);
  const ascii = (at: number, n: number) => String.fromCharCode(...icc.subarray(at, at + n));
  try {
    const count = Math.min(view.getUint32(128), 256);
    for (let k = 0; k < count; k++) {
      const entry = 132 + 12 * k;
      if (ascii(entry, 4) !== 'desc') continue;
      const at = view.getUint32(entry + 4);
      const type = ascii(at, 4);
      if (type === 'desc') return ascii(at + 12, Math.min(view.getUint32(at + 8), 200)).replace(/\0.*$/s, '') || 'unnamed';
      if (type === 'mluc') {
        const length = view.getUint32(at + 20);
        const offset = view.getUint32(at + 24);
        let text = '';
        for (let i = 0; i + 1 < Math.min(length, 400); i += 2) text += String.fromCharCode(view.getUint16(at + offset + i));
        return text.replace(/\0.*$/s, '') || 'unnamed';
      }
    }
  } catch {
    // a truncated or odd profile: no name
  }
  return 'unnamed';
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

/*
 * Results carry their settings, as ComfyUI and AUTOMATIC1111 do: in a PNG,
 * an iTXt chunk with the keyword `nst` (UTF-8 text: paths may be any
 * language) and a tEXt `Software`, both before the image data; in JPEG,
 * WebP, TIFF and AVIF, an XMP packet (written by sharp) holding the same
 * text in the element nst:settings of the namespace SETTINGS_NAMESPACE.
 * Both are read back with sharp (libvips), not by this code.
 */

/** The PNG keyword and the XMP namespace of the settings. */
export const SETTINGS_KEYWORD = 'nst';
export const SETTINGS_NAMESPACE = 'urn:nst:settings:1';

/** A PNG chunk: length, type, data, CRC-32 of type and data (PNG spec 5.3). */
function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** `png` with an iTXt chunk `nst` (uncompressed, no language) holding `text`, and a tEXt Software, before its first IDAT. */
export function withPngText(png: Buffer, text: string): Buffer {
  const itxt = pngChunk('iTXt', Buffer.concat([Buffer.from(`${SETTINGS_KEYWORD}\0\0\0\0\0`, 'latin1'), Buffer.from(text, 'utf8')]));
  const software = pngChunk('tEXt', Buffer.from(`Software\0${softwareName()}`, 'latin1'));
  // Chunks from the signature (8 bytes) on: length, type, data, CRC.
  for (let at = 8; at + 8 <= png.length; ) {
    const length = png.readUInt32BE(at);
    if (png.toString('latin1', at + 4, at + 8) === 'IDAT') return Buffer.concat([png.subarray(0, at), itxt, software, png.subarray(at)]);
    at += 12 + length;
  }
  throw new Error('the PNG written has no image data');
}

const escapeXml = (t: string) =>
  t.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
const unescapeXml = (t: string) =>
  t.replace(/&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);/gi, (_, e: string) =>
    e[0] === '#'
      ? String.fromCodePoint(e[1].toLowerCase() === 'x' ? parseInt(e.slice(2), 16) : Number(e.slice(1)))
      : { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[e.toLowerCase()]!,
  );

/** An XMP packet with `text` as nst:settings and nst as the creator tool. */
export function xmpPacket(text: string): string {
  return (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>' +
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
    `<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:nst="${SETTINGS_NAMESPACE}" xmp:CreatorTool="${escapeXml(softwareName())}">` +
    `<nst:settings>${escapeXml(text)}</nst:settings>` +
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
  );
}

/** The settings text an image file carries (PNG iTXt/tEXt `nst`, else XMP nst:settings), or undefined when it has none. */
export async function readImageSettingsText(file: string, field: string): Promise<string | undefined> {
  await assertReadable(file, field);
  let meta;
  try {
    meta = await sharp(file).metadata();
  } catch (e) {
    throw unreadable(file, field, e);
  }
  const comment = meta.comments?.find((c) => c.keyword === SETTINGS_KEYWORD);
  if (comment) return comment.text;
  const xmp = meta.xmp?.toString('utf8');
  const m = xmp === undefined ? null : /<nst:settings>([\s\S]*?)<\/nst:settings>/.exec(xmp);
  return m ? unescapeXml(m[1]) : undefined;
}

/** `nst <version>`, as results name their maker. */
export function softwareName(): string {
  return `nst ${NST_VERSION}`;
}
