// The README's pictures of the print (bench/print/run.sh): docs/print.jpg, the whole picture at
// 1024x768, and docs/print-crop.jpg, 1024x640 of its pixels at 100% from (--left, --top): by default gables of the houses on the right.
//   node bench/print/pictures.mjs PRINT.png [--left 2816] [--top 960]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const file = process.argv[2];
if (!file) throw new Error('usage: node bench/print/pictures.mjs PRINT.png [--left X] [--top Y]');
const arg = (name, fallback) => {
  const k = process.argv.indexOf(`--${name}`);
  return k > 0 ? Number(process.argv[k + 1]) : fallback;
};
const { width, height } = await sharp(file).metadata();
if (width !== 4096 || height !== 3072) throw new Error(`${file}: ${width}x${height}, not the print's 4096x3072`);
const crop = { left: arg('left', 2816), top: arg('top', 960), width: 1024, height: 640 };
await sharp(file)
  .resize(1024, 768)
  .jpeg({ quality: 88, mozjpeg: true })
  .toFile(path.join(root, 'docs', 'print.jpg'));
await sharp(file)
  .extract(crop)
  .jpeg({ quality: 90, mozjpeg: true })
  .toFile(path.join(root, 'docs', 'print-crop.jpg'));
console.log(
  `docs/print.jpg: the whole at 1024x768; docs/print-crop.jpg: ${crop.width}x${crop.height} at 100% from (${crop.left}, ${crop.top})`,
);
