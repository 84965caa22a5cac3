// Temporal consistency of `nst video`, side by side in one run, on the clip
// whose motion is known (test/fixtures/video: a pan, then a slow zoom, over
// tubingen.jpg):
//   1. independent: every frame stylised on its own (--frame-init independent --temporal-weight 0);
//   2. warm start: each frame starts from the previous result warped by the flow (--temporal-weight 0);
//   3. full: warm start plus the temporal loss (--temporal-weight W; W1,W2,...: one full run for each).
// Same iterations for all three; the first frame is the same job in all three
// (rendered once, by the first run, and found done by the others). Then, for
// each, the mean warping error between consecutive output frames over the
// pixels that are not occluded: output t-1 warped by the TRUE backward flow,
// against output t (pixel levels squared, per channel), and the seconds per
// frame. Also the optical flow's mean end-point error against the true flow
// (OpenCV's DIS through the addon, both presets, at the render size and the
// clip's).
//
// Run after `npx turbo run build` (needs ffmpeg and the addon built with OpenCV):
//   node bench/video/temporal.mjs [--size 320] [--from 24] [--frames 40] [--iterations 30]
//     [--first 100] [--temporal-weight W[,W...]] [--backend cpu] [--style starry_night.jpg]
//     [--modes independent,warm,full] [--out DIR] [--keep]
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { consistencyMasks, endPointError, greyOf, VIDEO_TEMPORAL_WEIGHT, warpingError } from '@nst/job';
import { loadNativeAddon } from '@nst/native';
import { CLIP, trueFlow } from '../../test/fixtures/video/clip-motion.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const nst = path.join(root, 'packages', 'cli', 'bin', 'nst.js');
const clip = path.join(root, 'test', 'fixtures', 'video', 'tubingen-pan-zoom.mp4');
const arg = (name, fallback) => {
  const k = process.argv.indexOf(`--${name}`);
  return k > 0 ? process.argv[k + 1] : fallback;
};
const SIZE = Number(arg('size', '320'));
const FROM = Number(arg('from', '24'));
const FRAMES = Number(arg('frames', '40'));
const ITERATIONS = arg('iterations', '30');
const FIRST = arg('first', '100');
const WEIGHTS = arg('temporal-weight', String(VIDEO_TEMPORAL_WEIGHT)).split(',');
const BACKEND = arg('backend', 'cpu');
const STYLE = path.join(root, 'examples', 'images', arg('style', 'starry_night.jpg'));
const MODES = arg('modes', 'independent,warm,full')
  .split(',')
  .flatMap((m) => (m === 'full' && WEIGHTS.length > 1 ? WEIGHTS.map((w) => `full@${w}`) : [m]));
const work = arg('out', undefined) ?? mkdtempSync(path.join(tmpdir(), 'nst-video-bench-'));
const size = { width: SIZE, height: Math.round((SIZE * CLIP.height) / CLIP.width) };
if (FROM + FRAMES > CLIP.frames) throw new Error(`frames ${FROM}..${FROM + FRAMES - 1}: the clip has ${CLIP.frames}`);

const RUNS = {
  independent: { label: 'independent per-frame stylisation', flags: ['--frame-init', 'independent', '--temporal-weight', '0'] },
  warm: { label: 'warm start only (no temporal loss)', flags: ['--frame-init', 'warped', '--temporal-weight', '0'] },
  ...Object.fromEntries(
    WEIGHTS.map((w) => [
      WEIGHTS.length > 1 ? `full@${w}` : 'full',
      { label: `full method (warm start + temporal loss ${w})`, flags: ['--frame-init', 'warped', '--temporal-weight', w] },
    ]),
  ),
};

// The clip's frames FROM .. FROM+FRAMES-1 as PNG files: `nst video` reads the folder (no re-encoding).
const input = path.join(work, 'input');
if (!existsSync(input)) {
  mkdirSync(input, { recursive: true });
  const x = spawnSync(
    'ffmpeg',
    [
      '-v',
      'error',
      '-i',
      clip,
      '-vf',
      `select='between(n\\,${FROM}\\,${FROM + FRAMES - 1})'`,
      '-fps_mode',
      'passthrough',
      '-pix_fmt',
      'rgb24',
      path.join(input, '%06d.png'),
    ],
    { encoding: 'utf8' },
  );
  if (x.status !== 0) throw new Error(x.stderr);
}

function run(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [nst, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      for (const line of String(d).split('\n'))
        if (line.includes('"event":"frame"')) {
          const e = JSON.parse(line);
          process.stderr.write(`  frame ${e.frame}/${e.frames} ${e.skipped ? 'done before' : `${e.seconds.toFixed(1)} s`}\r`);
        }
    });
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`nst ${args.join(' ')}: exit ${code}`))));
  });
}

async function rgb(file) {
  const { data } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return Float32Array.from(data);
}

const results = {};
let firstFrame;
for (const mode of MODES) {
  const out = path.join(work, mode.replace('@', '-'));
  mkdirSync(out, { recursive: true });
  if (firstFrame && !existsSync(path.join(out, '000001.png'))) cpSync(firstFrame, path.join(out, '000001.png'));
  process.stderr.write(`${RUNS[mode].label}\n`);
  const common = ['--size', String(SIZE), '--iterations', ITERATIONS, '--first-frame-iterations', FIRST, '--frame-rate', String(CLIP.fps)];
  const lines = await run(['video', input, '-s', STYLE, '-o', out, ...common, ...RUNS[mode].flags, '--backend', BACKEND, '--json']);
  const events = lines
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  const summary = events.find((e) => e.summary);
  const rendered = events.filter((e) => e.event === 'frame' && !e.skipped && e.frame > 1);
  firstFrame ??= path.join(out, '000001.png');
  // The warping error against the true motion.
  const files = readdirSync(out)
    .filter((n) => /^\d{6}\.png$/.test(n))
    .sort()
    .map((n) => path.join(out, n));
  let sum = 0;
  let previous = await rgb(files[0]);
  const perFrame = [];
  for (let t = 1; t < files.length; t++) {
    const current = await rgb(files[t]);
    const backward = trueFlow(FROM + t, FROM + t - 1, size);
    const forward = trueFlow(FROM + t - 1, FROM + t, size);
    const { weights } = consistencyMasks(forward, backward);
    const e = warpingError(previous, current, backward, weights);
    perFrame.push(e);
    sum += e;
    previous = current;
  }
  results[mode] = {
    label: RUNS[mode].label,
    warpingError: sum / (files.length - 1),
    perFrame,
    secondsPerFrame: rendered.reduce((a, e) => a + e.seconds, 0) / Math.max(1, rendered.length),
    // How stylised the later frames are: their final style loss (the same weights and layers in all three).
    styleLoss: rendered.reduce((a, e) => a + e.losses.style, 0) / Math.max(1, rendered.length),
    backend: summary ? events.find((e) => e.event === 'start')?.backend : undefined,
  };
  process.stderr.write(
    `\n  mean warping error ${results[mode].warpingError.toFixed(2)}, ${results[mode].secondsPerFrame.toFixed(2)} s per frame\n`,
  );
}

// The flow against the truth: DIS between input frames, forward, at the render size and the clip's.
const flowResults = [];
const addon = loadNativeAddon();
if (addon.ok && addon.addon.flowInfo().available) {
  for (const at of [size, { width: CLIP.width, height: CLIP.height }])
    for (const preset of ['fast', 'medium']) {
      let epe = 0;
      let ms = 0;
      const pairs = FRAMES - 1;
      for (let t = 1; t <= pairs; t++) {
        const grey = async (k) =>
          greyOf({
            ...at,
            data: new Uint8Array(
              await sharp(path.join(input, `${String(k + 1).padStart(6, '0')}.png`))
                .resize(at.width, at.height)
                .removeAlpha()
                .raw()
                .toBuffer(),
            ),
          });
        const [a, b] = [await grey(t - 1), await grey(t)];
        const t0 = performance.now();
        const data = addon.addon.opticalFlow({ from: a, to: b, width: at.width, height: at.height, preset });
        ms += performance.now() - t0;
        const truth = trueFlow(FROM + t - 1, FROM + t, at);
        epe += endPointError({ ...at, data }, truth, truth.inside);
      }
      flowResults.push({ size: `${at.width}x${at.height}`, preset, epe: epe / pairs, msPerFlow: ms / pairs });
    }
}

const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadavg()
  .map((l) => l.toFixed(1))
  .join(' ')} at the end`;
const report = {
  clip: `tubingen-pan-zoom.mp4 frames ${FROM}..${FROM + FRAMES - 1} (${FROM < CLIP.zoomFrom ? `pan to ${CLIP.zoomFrom - 1}, then zoom` : 'zoom'})`,
  size: `${size.width}x${size.height}`,
  iterations: { first: Number(FIRST), later: Number(ITERATIONS) },
  style: path.basename(STYLE),
  machine,
  results,
  flow: flowResults,
};
writeFileSync(path.join(work, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
const base = results.independent?.warpingError;
console.log(
  `\n${report.clip} at ${report.size}, ${FIRST} iterations for the first frame, ${ITERATIONS} for each later one, ${report.style}; ${machine}\n`,
);
console.log('| method | mean warping error (levels^2) | vs independent | s per frame | style loss of later frames |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const r of Object.values(results))
  console.log(
    `| ${r.label} | ${r.warpingError.toFixed(1)} | ${base ? `${(base / r.warpingError).toFixed(2)}x lower` : ''} | ${r.secondsPerFrame.toFixed(2)} | ${r.styleLoss.toExponential(2)} |`,
  );
if (flowResults.length > 0) {
  console.log('\n| flow (DIS) | preset | mean end-point error (px) | ms per flow |');
  console.log('| --- | --- | ---: | ---: |');
  for (const f of flowResults) console.log(`| ${f.size} | ${f.preset} | ${f.epe.toFixed(3)} | ${f.msPerFlow.toFixed(1)} |`);
}
console.log(`\noutputs and report.json: ${work}`);
if (!process.argv.includes('--keep') && arg('out', undefined) === undefined)
  rmSync(path.join(work, 'input'), { recursive: true, force: true });
