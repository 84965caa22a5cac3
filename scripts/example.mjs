#!/usr/bin/env node
// `npm run example`: the quick start's one command on a fresh clone. Sets the
// machine up (scripts/ensure-installed.mjs: system packages, dependencies,
// the native addon), then renders the Neckarfront in Tübingen in the style
// of The Starry Night at 400x300, 200 iterations, on the best backend found,
// with the best weights installed (else the built-in VGG-19 blocks 1-3), and
// ends with the output's path, the backend and the time.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { ensureInstalled, root } from './ensure-installed.mjs';

const started = performance.now();
try {
  ensureInstalled();
} catch (e) {
  console.error(`example: set-up failed: ${e.message.split('\n')[0]}`);
  process.exit(typeof e.status === 'number' && e.status !== 0 ? e.status : 1);
}

const out = path.join('examples', 'out', 'tubingen-starry-night.png');
mkdirSync(path.join(root, path.dirname(out)), { recursive: true });
const args = [
  'render',
  '--content',
  'examples/images/tubingen.jpg',
  '--style',
  'examples/images/starry_night.jpg',
  '--out',
  out,
  '--size',
  '400x300',
  '--iterations',
  '200',
  '--save-every',
  '0',
];
console.log(`example: nst ${args.join(' ')}`);

// The render's own lines pass through; the backend and the timing are picked out for the closing summary.
const child = spawn(process.execPath, [path.join(root, 'packages', 'cli', 'bin', 'nst.js'), ...args], {
  cwd: root,
  stdio: ['inherit', 'pipe', 'inherit'],
});
let backend = 'unknown';
let timing = '';
let pending = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  pending += chunk;
  const lines = pending.split('\n');
  pending = lines.pop();
  for (const line of lines) {
    if (line.startsWith('backend: ')) backend = line.slice('backend: '.length);
    const done = /^done: (.*?), wrote /.exec(line);
    if (done) timing = done[1];
  }
});
const status = await new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
if (status !== 0) {
  console.error(`example: the render failed (exit status ${status})`);
  process.exit(status);
}
console.log('');
console.log(`example: output  ${path.join(root, out)}`);
console.log(`example: backend ${backend}`);
console.log(`example: time    ${timing || 'unknown'}; ${((performance.now() - started) / 1000).toFixed(0)} s in all, set-up included`);
