#!/usr/bin/env node
// Exact tiling (issue 20), side by side in one run: peak RSS and seconds per
// iteration of `nst render` untiled and tiled, at each size, with the memory
// plan's predictions (`nst plan --json`) beside the measurements. Each render
// is its own process (peak RSS read as it exits: peak.mjs); random full
// VGG-19 weights, the default loss, the cpu backend.
//
//   npx turbo run build && node bench/tiling/run.mjs [--sizes 1024x768,2048x1536] [--iterations 3]
//
// The tiled row renders under --memory of half the untiled plan's peak
// (`--tile auto` then picks the tiling), or --tile N with --tile-core N (a
// list: one core per size, in order).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
// The image codec the job package decodes with (the bench writes its pictures with it).
const sharp = (await import(pathToFileURL(createRequire(path.join(root, 'packages/job/package.json')).resolve('sharp')).href)).default;
const nst = path.join(root, 'packages/cli/bin/nst.js');
const peak = path.join(root, 'bench/tiling/peak.mjs');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const sizes = arg('sizes', '1024x768,2048x1536').split(',');
const iterations = arg('iterations', '3');
const tileCores = arg('tile-core')?.split(',');

const dir = mkdtempSync(path.join(os.tmpdir(), 'nst-tiling-bench-'));
async function picture(file, width, height, seed) {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++)
        data[3 * (y * width + x) + c] = Math.round(127 + 120 * Math.sin((x + seed * 7) / (3 + seed + c)) * Math.cos(y / (4 + seed)));
  await sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

function run(args, env = {}) {
  const r = spawnSync(process.execPath, [nst, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`nst ${args.join(' ')} failed: ${r.stderr.trim().split('\n').pop()}`);
  return r;
}
const json = (stdout, pick) =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .find(pick);
const mib = (b) => (b / 2 ** 20).toFixed(0);
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const rows = [];
console.log(`# bench/tiling/run.mjs, ${new Date().toISOString()}, load average at the start ${load()}`);
console.log(`# ${os.cpus()[0].model}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`);
for (const [k, size] of sizes.entries()) {
  const tileCore = tileCores?.[Math.min(k, tileCores.length - 1)];
  const [width, height] = size.split('x').map(Number);
  const content = await picture(path.join(dir, `c${size}.png`), width, height, 1);
  const style = await picture(path.join(dir, `s${size}.png`), width, height, 2);
  const base = ['-c', content, '-s', style, '--size', size, '-w', 'random:1', '--backend', 'cpu', '-o', path.join(dir, `o${size}.png`)];
  const untiledPlan = json(run(['plan', ...base, '--tile', 'off', '--json']).stdout, (e) => e.event === 'plan');
  const tiled = tileCore ? ['--tile', tileCore] : ['--memory', String(Math.round(untiledPlan.peak / 2 / 2 ** 20))];
  for (const [mode, flags] of [
    ['untiled', ['--tile', 'off']],
    ['tiled', tiled],
  ]) {
    const plan = json(run(['plan', ...base, ...flags, '--json']).stdout, (e) => e.event === 'plan');
    const startLoad = load();
    const r = run(['render', ...base, ...flags, '-n', iterations, '--json'], { NODE_OPTIONS: `--import=${peak}` });
    const summary = json(r.stdout, (e) => e.summary);
    const measured = Number(/peak-rss-bytes (\d+)/.exec(r.stderr)[1]);
    const row = {
      size,
      mode,
      tiling: plan.tiled ? `${plan.tiled.tiles} tiles of ${plan.tiled.core} px` : '-',
      flags: flags.join(' '),
      secondsPerIteration: summary.secondsPerIteration,
      predictedSecondsPerIteration: plan.secondsPerIteration,
      peakMiB: Number(mib(measured)),
      predictedPeakMiB: Number(mib(plan.peak)),
      error: `${((100 * (plan.peak - measured)) / measured).toFixed(1)}%`,
      load: `${startLoad} -> ${load()}`,
    };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
console.log('\n| size | render | tiling | s / iteration | plan: s / it | peak RSS | plan: peak | plan error | load (1, 5, 15 min) |');
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
for (const r of rows)
  console.log(
    `| ${r.size} | ${r.mode} (${r.flags}) | ${r.tiling} | ${r.secondsPerIteration} | ${r.predictedSecondsPerIteration} | ${r.peakMiB} MiB | ${r.predictedPeakMiB} MiB | ${r.error} | ${r.load} |`,
  );
rmSync(dir, { recursive: true, force: true });
