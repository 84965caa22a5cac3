// The other way to keep the content's colours, for comparison with --preserve-colors luminance:
// take a full-colour render (notebook.jpg) and recombine its luminance with the content's chroma
// (core's recombineChroma, the same step luminance mode ends with). Writes docs/quality/recombined.jpg.
// Usage: node docs/quality/recombine.mjs   (after a build; images from ../shared/images)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { recombineChroma } from '@nst/core';
import { loadImage } from '@nst/job';

const here = path.dirname(fileURLToPath(import.meta.url));
// biome-ignore lint/suspicious/noUndeclaredEnvVars: a script that makes the README pictures, not a turbo task
const images = process.env.IMAGES ?? path.join(here, '../../../shared/images');
const size = { width: 400, height: 300 };
const content = await loadImage(path.join(images, 'tubingen.jpg'), 'content', size);
const output = await loadImage(path.join(here, 'notebook.jpg'), 'output', size);
const rgb = recombineChroma(output, content);
const bytes = Uint8Array.from(rgb.data, (v) => Math.min(255, Math.max(0, Math.round(v))));
await sharp(bytes, { raw: { ...size, channels: 3 } })
  .jpeg({ quality: 85 })
  .toFile(path.join(here, 'recombined.jpg'));
