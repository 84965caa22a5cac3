#!/usr/bin/env node
// Writes the example masks of examples/masks (README, Masks; test/masks-regions.test.ts), deterministically
// from examples/images/tubingen.jpg: the sky is, in each column, the run of pixels from the top that are
// blue (blue above red by 30 levels and above green) in the upper half; the rest is its complement. A
// blur of 2 px softens the edge. Run: node scripts/make-example-masks.mjs
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { data, info } = await sharp(path.join(root, 'examples/images/tubingen.jpg'))
  .toColourspace('srgb')
  .removeAlpha()
  .raw()
  .toBuffer({ resolveWithObject: true });
const { width, height } = info;
const sky = Buffer.alloc(width * height);
for (let x = 0; x < width; x++)
  for (let y = 0; y < height / 2; y++) {
    const i = (y * width + x) * 3;
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (!(b > r + 30 && b > g)) break;
    sky[y * width + x] = 255;
  }
const write = (pixels, name) =>
  sharp(pixels, { raw: { width, height, channels: 1 } })
    .blur(2)
    .png({ compressionLevel: 9 })
    .toFile(path.join(root, 'examples/masks', name));
await write(sky, 'tubingen-sky.png');
await write(
  sky.map((v) => 255 - v),
  'tubingen-rest.png',
);
