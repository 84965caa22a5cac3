#!/usr/bin/env node
// `npm run example`: the quick start's main job on a fresh clone. Installs the
// dependencies when they are missing (npm ci, which also builds the native
// addon and the TypeScript), draws the project's own example style image, and
// renders examples/out/landscape-brushstrokes.png with the best weights found.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureInstalled, root } from './ensure-installed.mjs';

ensureInstalled();

// A seeded "painting" of swirling brush strokes: the project's own style image.
const generated = path.join(root, 'examples', 'generated');
mkdirSync(generated, { recursive: true });
const stylePath = path.join(generated, 'brushstrokes.svg');
writeFileSync(stylePath, brushStrokes(800, 600, 42));

// Weights: the user's (NST_WEIGHTS or the cache), else the shared test set
// beside the checkout (VGG-19 blocks 1-3 only: a reduced layer set), else
// seeded random weights (the pipeline runs, but the result is not a stylisation).
const sharedWeights = path.resolve(root, '..', 'shared', 'weights', 'vgg19-keras-blocks1-3');
const { resolveDefaultWeights } = await import(path.join(root, 'packages', 'weights', 'dist', 'index.js'));
const installed = await resolveDefaultWeights();
const args = ['render', '--content', 'examples/landscape.svg', '--style', path.relative(root, stylePath), '--out', 'examples/out/landscape-brushstrokes.png'];
if (installed) {
  args.push('--size', '400x300', '--iterations', '200');
} else if (existsSync(sharedWeights)) {
  console.log(`example: using the VGG-19 blocks 1-3 at ${sharedWeights} (style conv1_1,conv2_1,conv3_1; content conv3_2)`);
  args.push('--weights', sharedWeights, '--style-layers', 'conv1_1:0.34,conv2_1:0.33,conv3_1:0.33', '--content-layers', 'conv3_2:1', '--size', '400x300', '--iterations', '200');
} else {
  console.log('example: no VGG-19 weights installed (see README: `npx nst weights fetch`); using seeded random weights, so the output is not a real stylisation');
  args.push('--weights', 'random:1', '--size', '200x150', '--iterations', '50');
}
mkdirSync(path.join(root, 'examples', 'out'), { recursive: true });
console.log(`example: nst ${args.join(' ')}`);
const r = spawnSync(process.execPath, [path.join(root, 'packages', 'cli', 'bin', 'nst.js'), ...args], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);

function brushStrokes(width, height, seed) {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const palette = ['#1b3b6f', '#2f5fa7', '#f2c14e', '#f78154', '#4d9078', '#b4436c', '#e8e1c8', '#0d1b2a'];
  const strokes = [];
  for (let i = 0; i < 900; i++) {
    const x = rand() * width, y = rand() * height;
    const angle = Math.sin(x / 90) * 2 + Math.cos(y / 70) * 2; // a swirling flow field
    const len = 20 + rand() * 50;
    const dx = Math.cos(angle) * len, dy = Math.sin(angle) * len;
    const bend = (rand() - 0.5) * len;
    const colour = palette[Math.floor(rand() * palette.length)];
    const w = (3 + rand() * 9).toFixed(1);
    strokes.push(`<path d="M${x.toFixed(1)} ${y.toFixed(1)} q${(dx / 2 - dy * bend / len).toFixed(1)} ${(dy / 2 + dx * bend / len).toFixed(1)} ${dx.toFixed(1)} ${dy.toFixed(1)}" stroke="${colour}" stroke-width="${w}" stroke-linecap="round" fill="none" opacity="0.85"/>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#22365a"/>${strokes.join('')}</svg>\n`;
}
