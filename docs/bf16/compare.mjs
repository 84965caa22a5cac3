#!/usr/bin/env node
// docs/bf16/make.sh's comparison of one weight set's fp32 and bf16 renders:
// the losses scored in fp32, relative L2, PSNR and the largest difference of
// the two pictures (8-bit RGB as written), and the side-by-side picture
// <out>/<set>.jpg (fp32 | bf16 | |difference| x 8). Appends to <out>/results.json.
//   node docs/bf16/compare.mjs SET TMP OUT
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';

const [set, tmp, out] = process.argv.slice(2);
const read = (p) => JSON.parse(readFileSync(path.join(tmp, `${set}-${p}`), 'utf8'));
const pixels = async (p) =>
  sharp(path.join(tmp, `${set}-${p}.png`))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
const [a, b] = [await pixels('fp32'), await pixels('bf16')];
const { width, height } = a.info;

let diff2 = 0;
let norm2 = 0;
let maxDiff = 0;
const amplified = Buffer.alloc(a.data.length);
for (let i = 0; i < a.data.length; i++) {
  const d = a.data[i] - b.data[i];
  diff2 += d * d;
  norm2 += a.data[i] * a.data[i];
  maxDiff = Math.max(maxDiff, Math.abs(d));
  amplified[i] = Math.min(255, Math.abs(d) * 8);
}
const mse = diff2 / a.data.length;
const psnr = 10 * Math.log10((255 * 255) / mse);
const relL2 = Math.sqrt(diff2 / norm2);
let within2 = 0;
for (let i = 0; i < a.data.length; i++) if (Math.abs(a.data[i] - b.data[i]) <= 2) within2++;

const scored = { fp32: read('fp32.score.json').final, bf16: read('bf16.score.json').final };
const rendered = { fp32: read('fp32.summary.json'), bf16: read('bf16.summary.json') };
const ratio = scored.bf16.total / scored.fp32.total;
const result = {
  set,
  size: `${width}x${height}`,
  fp32: { backend: rendered.fp32.backend, seconds: rendered.fp32.seconds, scored: scored.fp32 },
  bf16: { backend: rendered.bf16.backend, seconds: rendered.bf16.seconds, scored: scored.bf16 },
  lossRatio: ratio,
  relL2,
  psnr,
  maxDiff,
  within2Levels: within2 / a.data.length,
};
console.log(
  `   ${set}: loss scored in fp32: fp32 image ${scored.fp32.total.toExponential(4)}, bf16 image ${scored.bf16.total.toExponential(4)} ` +
    `(bf16/fp32 = ${ratio.toFixed(4)}, ${ratio <= 1.01 ? 'within 1% or better' : 'MORE THAN 1% WORSE'}); ` +
    `images: rel. L2 ${relL2.toExponential(2)}, PSNR ${psnr.toFixed(1)} dB, max |diff| ${maxDiff} levels, ${(100 * result.within2Levels).toFixed(1)}% of values within 2 levels`,
);

// fp32 | bf16 | difference x 8, 8 px apart on white.
const gap = 8;
const tile = (data) => ({ input: data, raw: { width, height, channels: 3 } });
await sharp({ create: { width: 3 * width + 2 * gap, height, channels: 3, background: '#ffffff' } })
  .composite([
    { ...tile(a.data), left: 0, top: 0 },
    { ...tile(b.data), left: width + gap, top: 0 },
    { ...tile(amplified), left: 2 * (width + gap), top: 0 },
  ])
  .jpeg({ quality: 85 })
  .toFile(path.join(out, `${set}.jpg`));

const file = path.join(out, 'results.json');
const all = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).filter((r) => r.set !== set) : [];
writeFileSync(file, `${JSON.stringify([...all, result], null, 2)}\n`);
