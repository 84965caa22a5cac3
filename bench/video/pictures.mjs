// The README's video pictures, from a run of bench/video/temporal.mjs (its --out folder):
//   docs/video-strip.jpg: frames of the clip, stylised independently and by the full method, and
//     under each its difference from the frame before, moved by the clip's true motion (what the
//     warping error measures; amplified, black where the pixel was occluded): the independent
//     version's flicker lights it up everywhere, the full method's stays dark;
//   docs/video-side-by-side.gif: the two, side by side, animated (ffmpeg's palette filters).
// Run: node bench/video/pictures.mjs DIR [--full full-1000000] [--every 2] [--count 5]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { consistencyMasks, warp } from '@nst/job';
import { trueFlow } from '../../test/fixtures/video/clip-motion.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = process.argv[2];
if (!dir) throw new Error('usage: node bench/video/pictures.mjs DIR (the --out folder of bench/video/temporal.mjs)');
const arg = (name, fallback) => {
  const k = process.argv.indexOf(`--${name}`);
  return k > 0 ? process.argv[k + 1] : fallback;
};
const FULL = arg('full', 'full');
const EVERY = Number(arg('every', '2'));
const COUNT = Number(arg('count', '5'));
const TILE = 192; // width of a frame in the strip
const LABEL = 136;
const AMPLIFY = 4;

const framesOf = (sub) =>
  readdirSync(path.join(dir, sub))
    .filter((n) => /^\d{6}\.png$/.test(n))
    .sort()
    .map((n) => path.join(dir, sub, n));
const rows = [
  ['input', framesOf('input')],
  ['independent', framesOf('independent')],
  ['full method', framesOf(FULL)],
];
// Frames 2, 2+EVERY, ... (the first frame is the same job in every run).
const picks = Array.from({ length: COUNT }, (_, k) => 1 + k * EVERY).filter((t) => t < rows[0][1].length);
const { width, height } = await sharp(rows[1][1][0]).metadata(); // the stylised frames' size
// The clip frame the bench's first frame is (its report says 'frames FROM..TO').
const FROM = Number(/frames (\d+)\.\./.exec(JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')).clip)[1]);
const tileH = Math.round((TILE * height) / width);

const raw = async (file) => sharp(file).removeAlpha().resize(TILE, tileH).raw().toBuffer();
const png = (data) =>
  sharp(data, { raw: { width: TILE, height: tileH, channels: 3 } })
    .png()
    .toBuffer();
/** |frame t - frame t-1 warped by the true backward flow| x AMPLIFY, black where occluded, at the frames' size, then as a tile. */
async function difference(files, t) {
  const full = async (file) => Float32Array.from(await sharp(file).removeAlpha().raw().toBuffer());
  const size = { width, height };
  const backward = trueFlow(FROM + t, FROM + t - 1, size);
  const { weights } = consistencyMasks(trueFlow(FROM + t - 1, FROM + t, size), backward);
  const { image: warped, inside } = warp(await full(files[t - 1]), 3, backward);
  const current = await full(files[t]);
  const out = Buffer.alloc(current.length);
  for (let p = 0; p < width * height; p++)
    if (weights[p] > 0 && inside[p])
      for (let c = 0; c < 3; c++) out[3 * p + c] = Math.min(255, AMPLIFY * Math.abs(current[3 * p + c] - warped[3 * p + c]));
  return sharp(out, { raw: { width, height, channels: 3 } })
    .resize(TILE, tileH)
    .png()
    .toBuffer();
}
const label = (text, h) =>
  Buffer.from(
    `<svg width="${LABEL}" height="${h}"><rect width="100%" height="100%" fill="white"/>` +
      text
        .split('\n')
        .map(
          (line, k, all) =>
            `<text x="6" y="${h / 2 + (k - (all.length - 1) / 2) * 15 + 5}" font-family="sans-serif" font-size="13">${line}</text>`,
        )
        .join('') +
      '</svg>',
  );

const layers = [];
let y = 0;
const addRow = async (name, tiles) => {
  layers.push({ input: label(name, tileH), left: 0, top: y });
  tiles.forEach((t, k) => layers.push({ input: t, left: LABEL + k * (TILE + 2), top: y }));
  y += tileH + 2;
};
await addRow('input', await Promise.all(picks.map(async (t) => png(await raw(rows[0][1][t])))));
for (const [name, files] of rows.slice(1)) {
  await addRow(name, await Promise.all(picks.map(async (t) => png(await raw(files[t])))));
  await addRow(
    `${name}: x${AMPLIFY}\n|frame - previous\nmoved by the\nclip's motion|`,
    await Promise.all(picks.map((t) => difference(files, t))),
  );
}
const strip = path.join(root, 'docs', 'video-strip.jpg');
await sharp({ create: { width: LABEL + picks.length * (TILE + 2), height: y, channels: 3, background: 'white' } })
  .composite(layers)
  .jpeg({ quality: 84 })
  .toFile(strip);

// The animated preview: independent | full, at 8 frames per second, looping.
const work = mkdtempSync(path.join(tmpdir(), 'nst-video-pictures-'));
const gif = path.join(root, 'docs', 'video-side-by-side.gif');
const pattern = (sub) => path.join(dir, sub, '%06d.png');
const r = spawnSync(
  'ffmpeg',
  [
    ...['-v', 'error', '-y', '-framerate', '8', '-i', pattern('independent'), '-framerate', '8', '-i', pattern(FULL)],
    '-filter_complex',
    `[0:v]scale=${TILE}:-2[a];[1:v]scale=${TILE}:-2[b];[a][b]hstack=inputs=2,split[s0][s1];[s0]palettegen=max_colors=128[p];[s1][p]paletteuse=dither=bayer`,
    ...['-loop', '0', gif],
  ],
  { encoding: 'utf8' },
);
rmSync(work, { recursive: true, force: true });
if (r.status !== 0) throw new Error(r.stderr);
for (const f of [strip, gif]) console.log(`${path.relative(root, f)}: ${(statSync(f).size / 1024).toFixed(0)} KiB`);
