/**
 * The example masks of examples/masks (README, Masks; test/masks-regions.test.ts)
 * are made deterministically from examples/images/tubingen.jpg, here: the sky
 * is, in each column, the run of pixels from the top that are blue (blue above
 * red by 30 levels and above green) in the upper half; the rest is its
 * complement; a blur of 2 px softens the edge. The committed files must be what
 * this rule gives; NST_WRITE_EXAMPLE_MASKS=1 writes them again.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '@nst/test-helpers';

async function exampleMasks(): Promise<{ name: string; png: Buffer }[]> {
  const { data, info } = await sharp(path.join(repoRoot, 'examples/images/tubingen.jpg'))
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width, height } = info;
  const sky = Buffer.alloc(width * height);
  for (let x = 0; x < width; x++)
    for (let y = 0; y < height / 2; y++) {
      const i = (y * width + x) * 3;
      if (!(data[i + 2] > data[i] + 30 && data[i + 2] > data[i + 1])) break;
      sky[y * width + x] = 255;
    }
  const png = (pixels: Buffer) =>
    sharp(pixels, { raw: { width, height, channels: 1 } })
      .blur(2)
      .toColourspace('b-w')
      .png({ compressionLevel: 9 })
      .toBuffer();
  return [
    { name: 'tubingen-sky.png', png: await png(sky) },
    { name: 'tubingen-rest.png', png: await png(Buffer.from(sky.map((v) => 255 - v))) },
  ];
}

describe('the example masks', () => {
  it('are the sky of tubingen.jpg by their rule, and its complement', async () => {
    for (const { name, png } of await exampleMasks()) {
      const file = path.join(repoRoot, 'examples/masks', name);
      if (process.env.NST_WRITE_EXAMPLE_MASKS === '1') writeFileSync(file, png);
      expect((await sharp(file).metadata()).channels, name).toBe(1);
      const committed = await sharp(file).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
      const made = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
      expect([committed.info.width, committed.info.height]).toEqual([1024, 768]);
      expect(committed.data.equals(made.data), name).toBe(true);
    }
    // The sky: about the upper third, at the top of the middle column, not at the bottom.
    const sky = await sharp(path.join(repoRoot, 'examples/masks/tubingen-sky.png')).extractChannel(0).raw().toBuffer();
    const share = sky.reduce((s, v) => s + v, 0) / 255 / sky.length;
    expect(share).toBeGreaterThan(0.2);
    expect(share).toBeLessThan(0.45);
    expect(sky[512]).toBe(255);
    expect(sky[767 * 1024 + 512]).toBe(0);
  });
});
