/**
 * Faithful files: 16-bit output, alpha passed through, EXIF orientation
 * honoured, ICC profiles named; histogram matching on the example pair.
 */
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { colourStatistics, matchColourStatistics, toNetworkSpace, type Preprocessing } from '@nst/core';
import { iccDescription, loadAlpha, loadImage, probeColourProfile, probeImage, quantise, saveRendered } from '@nst/job';
import { newDir, sharedAvailable, sharedImages } from '@nst/test-helpers';

const CAFFE: Preprocessing = { name: 'caffe-bgr', channelOrder: 'bgr', scale: 255, mean: [103.939, 116.779, 123.68], std: [1, 1, 1] };
const dir = newDir('nst-quality-files-');

async function readBack16(file: string) {
  const { data, info } = await sharp(file).toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  return { info, values: new Uint16Array(data.buffer, data.byteOffset, data.length / 2) };
}

describe('output files', () => {
  it('16-bit PNG and TIFF round-trip more than 256 levels, exactly, with the alpha channel', async () => {
    // A smooth ramp spanning 2 levels of 8-bit over 256 x 64 pixels: 8 bits hold 3 values, 16 bits hundreds.
    const w = 256;
    const h = 64;
    const levels = new Float64Array(w * h * 3);
    for (let i = 0; i < w * h; i++)
      for (let c = 0; c < 3; c++) levels[3 * i + c] = 100 + (2 * (i % w)) / w + c * 0.3 + Math.floor(i / w) / 64;
    const alpha = Uint8Array.from({ length: w * h }, (_, i) => (i * 7) % 256);
    const tensor = toNetworkSpace({ width: w, height: h, data: levels }, CAFFE);
    for (const name of ['ramp16.png', 'ramp16.tif']) {
      const file = path.join(dir, name);
      await saveRendered(file, tensor, CAFFE, { bitDepth: 16, alpha });
      const meta = await sharp(file).metadata();
      expect(meta.depth).toBe('ushort');
      expect(meta.hasAlpha).toBe(true);
      const { info, values } = await readBack16(file);
      expect(info.channels).toBe(4);
      const red = new Set<number>();
      let worst = 0;
      for (let i = 0; i < w * h; i++) {
        red.add(values[4 * i]);
        // Independent expectation: level * 65535/255, rounded.
        for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(values[4 * i + c] - Math.round(levels[3 * i + c] * 257)));
        expect(values[4 * i + 3]).toBe(alpha[i] * 257);
      }
      console.log(`${name}: ${red.size} distinct red levels, max error ${worst} (1/65535)`);
      expect(red.size).toBeGreaterThan(256);
      expect(worst).toBeLessThanOrEqual(1);
    }
  });

  it('8-bit quantisation rounds and clips like toPixels', () => {
    const q = quantise({ width: 2, height: 1, data: [-3, 0.5, 254.6, 300, 127.49, 127.5] }, 8);
    expect(Array.from(q.data)).toEqual([0, 1, 255, 255, 127, 128]);
  });

  it('an alpha channel is read at the output size and written back unchanged', async () => {
    const w = 32;
    const h = 24;
    const rgba = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba.set([200, 100, 50, (i * 11) % 256], 4 * i);
    const file = path.join(dir, 'alpha.png');
    await sharp(rgba, { raw: { width: w, height: h, channels: 4 } })
      .png()
      .toFile(file);
    const alpha = await loadAlpha(file, 'content', { width: w, height: h });
    expect(Array.from(alpha!)).toEqual(Array.from({ length: w * h }, (_, i) => (i * 11) % 256));
    const out = path.join(dir, 'alpha-out.png');
    const content = await loadImage(file, 'content');
    await saveRendered(out, toNetworkSpace(content, CAFFE), CAFFE, { alpha });
    const back = await sharp(out).raw().toBuffer();
    for (let i = 0; i < w * h; i++) expect(back[4 * i + 3]).toBe((i * 11) % 256);
    expect(await loadAlpha(path.join(dir, 'alpha-out.png'), 'content', { width: w, height: h })).toBeDefined();
  });

  it('EXIF orientation is honoured on input (orientation 6: rotate 90 degrees clockwise)', async () => {
    // Stored 40x20: left half red, right half blue. Displayed: 20x40, red on top.
    const w = 40;
    const h = 20;
    const rgb = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) rgb.set(i % w < w / 2 ? [255, 0, 0] : [0, 0, 255], 3 * i);
    const file = path.join(dir, 'rotated.jpg');
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toFile(file);
    expect((await sharp(file).metadata()).orientation).toBe(6);
    expect(await probeImage(file, 'content')).toEqual({ width: 20, height: 40 });
    const img = await loadImage(file, 'content');
    expect([img.width, img.height]).toEqual([20, 40]);
    const at = (x: number, y: number) => Array.from(img.data.subarray(3 * (y * 20 + x), 3 * (y * 20 + x) + 3));
    expect(at(10, 5)[0]).toBeGreaterThan(200); // red on top
    expect(at(10, 35)[2]).toBeGreaterThan(200); // blue below
  });

  it('names an embedded ICC profile, and a kept one is converted back and embedded', async () => {
    const rgb = Buffer.alloc(16 * 16 * 3, 120);
    const file = path.join(dir, 'p3.png');
    await sharp(rgb, { raw: { width: 16, height: 16, channels: 3 } })
      .withIccProfile('p3')
      .png()
      .toFile(file);
    const profile = await probeColourProfile(file, 'content');
    expect(profile).toBeDefined();
    expect(profile!.description.length).toBeGreaterThan(0);
    const srgbOut = path.join(dir, 'as-srgb.png');
    const keptOut = path.join(dir, 'kept.png');
    const content = await loadImage(file, 'content');
    await saveRendered(srgbOut, toNetworkSpace(content, CAFFE), CAFFE, {});
    await saveRendered(keptOut, toNetworkSpace(content, CAFFE), CAFFE, { icc: profile!.icc });
    const described = async (f: string) => iccDescription(new Uint8Array((await sharp(f).metadata()).icc!));
    expect(await described(srgbOut)).toMatch(/srgb/i);
    expect(await described(keptOut)).toBe(profile!.description);
    // The kept file, read back into sRGB, is the content again (within rounding of two conversions).
    const [a, b] = await Promise.all([loadImage(keptOut, 'x'), loadImage(file, 'x')]);
    let worst = 0;
    for (let i = 0; i < a.data.length; i++) worst = Math.max(worst, Math.abs(a.data[i] - b.data[i]));
    expect(worst).toBeLessThanOrEqual(2);
  });
});

describe.runIf(sharedAvailable('images'))('histogram matching on the example pair', () => {
  it("starry_night recoloured to tubingen's mean and covariance within 1% (before and after clipping to 0..255)", async () => {
    const size = { width: 200, height: 150 };
    const content = await loadImage(path.join(sharedImages, 'tubingen.jpg'), 'content', size);
    const style = await loadImage(path.join(sharedImages, 'starry_night.jpg'), 'style', size);
    const matched = matchColourStatistics(style, content);
    const clipped = { ...matched, data: matched.data.map((v) => Math.min(255, Math.max(0, v))) };
    // Independent statistics: plain float64 sums.
    const stats = (d: ArrayLike<number>) => {
      const n = d.length / 3;
      const mean = [0, 1, 2].map((c) => Array.from({ length: n }, (_, i) => d[3 * i + c]).reduce((a, b) => a + b, 0) / n);
      const cov = [0, 1, 2].flatMap((a) =>
        [0, 1, 2].map(
          (b) => Array.from({ length: n }, (_, i) => (d[3 * i + a] - mean[a]) * (d[3 * i + b] - mean[b])).reduce((x, y) => x + y, 0) / n,
        ),
      );
      return { mean, cov };
    };
    const want = stats(content.data);
    for (const [name, img] of [
      ['unclipped', matched.data],
      ['clipped', clipped.data],
    ] as const) {
      const got = stats(img);
      const meanErr = Math.max(...got.mean.map((m, c) => Math.abs(m - want.mean[c]) / want.mean[c]));
      const covErr = Math.max(...got.cov.map((v, k) => Math.abs(v - want.cov[k]) / Math.abs(want.cov[k])));
      console.log(
        `histogram matching (${name}): channel mean rel error ${meanErr.toExponential(2)}, covariance entry rel error ${covErr.toExponential(2)}`,
      );
      expect(meanErr).toBeLessThan(0.01);
      expect(covErr).toBeLessThan(0.01);
    }
    expect(colourStatistics(style).mean[2]).not.toBeCloseTo(want.mean[2], 0); // it did change something
  });
});

describe('16-bit colours', () => {
  it('saturated colours survive a 16-bit file exactly (no colour transform on rgb16)', async () => {
    const levels = [40, 200, 0, 217, 118, 6, 113, 180, 22, 0, 0, 255];
    const file = path.join(dir, 'saturated16.png');
    await saveRendered(file, toNetworkSpace({ width: 4, height: 1, data: levels }, CAFFE), CAFFE, { bitDepth: 16 });
    const { values } = await readBack16(file);
    for (let i = 0; i < levels.length; i++) expect(Math.abs(values[i] - levels[i] * 257)).toBeLessThanOrEqual(1);
  });
});
