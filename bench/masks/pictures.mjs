// The README's masks picture, docs/masks-regions.jpg: the README's two-region command rendered
// (The Starry Night on tubingen's sky, The Scream on the rest; the built CLI, its defaults), shown
// beside what it was given: the photo, the sky mask, the rest mask, then the result.
// Run: node bench/masks/pictures.mjs [--size 400]   (writes docs/masks-regions.jpg; keeps the render in a temporary folder)
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const k = process.argv.indexOf('--size');
const size = k > 0 ? process.argv[k + 1] : '400';
const at = (p) => path.join(root, 'examples', p);
const inputs = {
  photo: at('images/tubingen.jpg'),
  sky: at('masks/tubingen-sky.png'),
  rest: at('masks/tubingen-rest.png'),
};
const out = path.join(mkdtempSync(path.join(tmpdir(), 'nst-masks-')), 'regions.png');
const args = ['render', '-c', inputs.photo, '-s', at('images/starry_night.jpg'), '--style-mask', inputs.sky];
args.push('-s', at('images/the_scream.jpg'), '--style-mask', inputs.rest, '--size', size, '-o', out);
const run = spawnSync(process.execPath, [path.join(root, 'packages/cli/dist/main.js'), ...args], { stdio: 'inherit' });
if (run.status !== 0) throw new Error(`nst render failed (${run.status})`);

const TILE = 300;
const GAP = 8;
const tiles = await Promise.all(
  [inputs.photo, inputs.sky, inputs.rest, out].map((f) =>
    sharp(f).resize({ width: TILE }).removeAlpha().toColourspace('srgb').png().toBuffer(),
  ),
);
const height = Math.max(...(await Promise.all(tiles.map(async (t) => (await sharp(t).metadata()).height))));
await sharp({ create: { width: tiles.length * TILE + (tiles.length - 1) * GAP, height, channels: 3, background: '#ffffff' } })
  .composite(tiles.map((input, i) => ({ input, left: i * (TILE + GAP), top: 0 })))
  .jpeg({ quality: 85 })
  .toFile(path.join(root, 'docs', 'masks-regions.jpg'));
console.log(`docs/masks-regions.jpg: photo, sky mask, rest mask, result (${out})`);
