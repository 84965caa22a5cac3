import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PREPROCESSING, toNetworkSpace, toPixels, resolveSize, initialImage, Rng, type RgbImage } from '@nst/core';
import { loadImage, parseSize, saveImage } from '@nst/job';

function randomImage(width: number, height: number, seed: number): RgbImage {
  const rng = new Rng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rng.uniform() * 256);
  return { width, height, data };
}

describe('preprocessing', () => {
  for (const pre of Object.values(PREPROCESSING)) {
    it(`round-trips pixels through ${pre.name}`, () => {
      const img = randomImage(7, 5, 1);
      const back = toPixels(toNetworkSpace(img, pre), pre);
      expect(Array.from(back.data)).toEqual(Array.from(img.data));
    });
  }

  it('puts channels in the order and units of each weight set', () => {
    const img: RgbImage = { width: 1, height: 1, data: new Uint8Array([200, 100, 50]) };
    // Keras/Caffe: BGR minus (103.939, 116.779, 123.68)
    expect(Array.from(toNetworkSpace(img, PREPROCESSING.caffeBgr).data)).toEqual(
      [50 - 103.939, 100 - 116.779, 200 - 123.68].map(Math.fround),
    );
    // MatConvNet: RGB minus (123.68, 116.779, 103.939)
    expect(Array.from(toNetworkSpace(img, PREPROCESSING.caffeRgb).data)).toEqual(
      [200 - 123.68, 100 - 116.779, 50 - 103.939].map(Math.fround),
    );
    const tv = toNetworkSpace(img, PREPROCESSING.torchvision).data;
    expect(tv[0]).toBeCloseTo((200 / 255 - 0.485) / 0.229, 5);
    expect(tv[2]).toBeCloseTo((50 / 255 - 0.406) / 0.225, 5);
  });

  it('clips to 0..255 on the way back', () => {
    const t = { width: 2, height: 1, data: new Float32Array([1000, -1000, 0, -1000, 1000, 0]) };
    expect(Array.from(toPixels(t, PREPROCESSING.caffeRgb).data)).toEqual([255, 0, 104, 0, 255, 104]);
  });
});

describe('image files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nst-img-'));

  it('saves atomically and loads back the same pixels (png), resized on request', async () => {
    const img = randomImage(16, 9, 2);
    const file = path.join(dir, 'a.png');
    await saveImage(file, img);
    const back = await loadImage(file, 'content');
    expect(back.width).toBe(16);
    expect(Array.from(back.data)).toEqual(Array.from(img.data));
    const small = await loadImage(file, 'content', { width: 8, height: 4 });
    expect([small.width, small.height, small.data.length]).toEqual([8, 4, 96]);
  });

  it('writes .tif and .tiff losslessly: noise round-trips to the exact pixels', async () => {
    const img = randomImage(33, 17, 9); // noise: any lossy encoding would change it
    for (const name of ['n.tif', 'n.TIFF']) {
      const file = path.join(dir, name);
      await saveImage(file, img);
      const meta = await sharp(file).metadata();
      expect(meta.format).toBe('tiff');
      const back = await loadImage(file, 'content');
      expect(Buffer.from(back.data).equals(Buffer.from(img.data))).toBe(true);
    }
  });

  it('flattens alpha and converts grey images to RGB', async () => {
    const file = path.join(dir, 'grey.png');
    await sharp(Buffer.from([0, 128, 255, 64]), { raw: { width: 2, height: 2, channels: 1 } })
      .png()
      .toFile(file);
    const back = await loadImage(file, 'style');
    expect(Array.from(back.data.subarray(0, 6))).toEqual([0, 0, 0, 128, 128, 128]);
  });

  it('gives one-line errors naming the flag and the file', async () => {
    await expect(loadImage(path.join(dir, 'missing.jpg'), 'content')).rejects.toThrow(/^content: no such file '.*missing\.jpg'$/);
    const junk = path.join(dir, 'junk.jpg');
    writeFileSync(junk, 'not an image at all');
    await expect(loadImage(junk, 'style')).rejects.toThrow(/^style: cannot read '.*junk\.jpg' as an image/);
    await expect(saveImage(path.join(dir, 'x.bmpx'), randomImage(2, 2, 3))).rejects.toThrow(/^out: .*no supported image extension/);
    // a regular file used as a folder cannot be written into, even by root
    await expect(saveImage(path.join(junk, 'o.png'), randomImage(2, 2, 3))).rejects.toThrow(/^out: cannot write '.*o\.png': ENOTDIR/);
  });
});

describe('sizes and initial images', () => {
  it('parses --size', () => {
    expect(parseSize('400x300')).toEqual({ kind: 'exact', width: 400, height: 300 });
    expect(resolveSize(parseSize('512'), 1024, 768)).toEqual({ width: 512, height: 384 });
    expect(resolveSize(parseSize('512'), 600, 1200)).toEqual({ width: 256, height: 512 });
    for (const bad of ['0x10', 'abc', '10x', '-5', '99999']) expect(() => parseSize(bad)).toThrow(/^size: /);
  });

  it("mixes the notebook's noise: 0.6 * U(-20, 20) + 0.4 * content, seeded", () => {
    const content = toNetworkSpace(randomImage(64, 64, 4), PREPROCESSING.caffeRgb);
    const a = initialImage({ kind: 'noise', noiseRatio: 0.6 }, content, PREPROCESSING.caffeRgb, 7);
    const b = initialImage({ kind: 'noise', noiseRatio: 0.6 }, content, PREPROCESSING.caffeRgb, 7);
    const c = initialImage({ kind: 'noise', noiseRatio: 0.6 }, content, PREPROCESSING.caffeRgb, 8);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    // recover the noise: (a - 0.4 content) / 0.6 must be uniform on [-20, 20]
    let min = Infinity,
      max = -Infinity,
      sum = 0,
      sq = 0;
    for (let i = 0; i < a.length; i++) {
      const n = (a[i] - 0.4 * content.data[i]) / 0.6;
      min = Math.min(min, n);
      max = Math.max(max, n);
      sum += n;
      sq += n * n;
    }
    expect(min).toBeGreaterThanOrEqual(-20.001);
    expect(max).toBeLessThanOrEqual(20.001);
    expect(max - min).toBeGreaterThan(39.5);
    expect(Math.abs(sum / a.length)).toBeLessThan(0.5);
    expect(sq / a.length).toBeCloseTo(400 / 3, -1); // variance of U(-20,20)
  });
});
