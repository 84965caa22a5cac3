/**
 * The optical flow of nst video (OpenCV's DIS through the native addon) on
 * the clip whose motion is known (test/fixtures/video/make-clip.sh: a pan of
 * 3 px a frame, then a slow zoom, over tubingen.jpg): the clip really moves
 * as clip-motion.mjs says (a frame warped by the true flow is the next frame,
 * up to H.264's noise), and the flow's mean end-point error against the true
 * flow, reported for both presets and held below a bound.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { consistencyMasks, endPointError, greyOf, warpingError } from '@nst/job';
import { loadNativeAddon } from '@nst/native';
import { available, newDir, repoRoot } from '@nst/test-helpers';
import { CLIP, trueFlow } from './fixtures/video/clip-motion.mjs';

const clip = path.join(repoRoot, 'test', 'fixtures', 'video', 'tubingen-pan-zoom.mp4');
const loaded = loadNativeAddon();
const runs =
  available(spawnSync('ffmpeg', ['-version']).status === 0, 'video flow tests: ffmpeg is not installed (sudo apt-get install ffmpeg)') &&
  available(loaded.ok && loaded.addon.flowInfo().available, 'video flow tests: the native addon has no optical flow (libopencv-dev)');

/** Frame pairs (t - 1, t): in the pan, and in the zoom. */
const PAIRS = [10, 30, 60, 90];

describe.skipIf(!runs)('the optical flow against the true motion of the clip', () => {
  const frames = new Map<number, { rgb: Float32Array; grey: Uint8Array }>();
  beforeAll(async () => {
    const dir = newDir('nst-video-flow-');
    const wanted = [...new Set(PAIRS.flatMap((t) => [t - 1, t]))];
    const select = wanted.map((n) => `eq(n\\,${n})`).join('+');
    const r = spawnSync('ffmpeg', [
      '-v',
      'error',
      '-i',
      clip,
      '-vf',
      `select='${select}'`,
      '-fps_mode',
      'passthrough',
      '-pix_fmt',
      'rgb24',
      path.join(dir, '%03d.png'),
    ]);
    if (r.status !== 0) throw new Error(String(r.stderr));
    const files = readdirSync(dir).sort();
    for (const [k, n] of wanted.entries()) {
      const data = new Uint8Array(await sharp(path.join(dir, files[k])).removeAlpha().raw().toBuffer());
      frames.set(n, { rgb: Float32Array.from(data), grey: greyOf({ width: CLIP.width, height: CLIP.height, data }) });
    }
  });
  const size = { width: CLIP.width, height: CLIP.height };

  it('the clip moves as its script says: frame t-1 warped by the true flow is frame t, up to the codec', () => {
    for (const t of PAIRS) {
      const backward = trueFlow(t, t - 1);
      const { weights } = consistencyMasks(trueFlow(t - 1, t), backward);
      const aligned = warpingError(frames.get(t - 1)!.rgb, frames.get(t)!.rgb, backward, weights);
      const still = warpingError(
        frames.get(t - 1)!.rgb,
        frames.get(t)!.rgb,
        { ...size, data: new Float32Array(size.width * size.height * 2) },
        weights,
      );
      console.log(
        `frames ${t - 1}, ${t}: mean squared difference ${aligned.toFixed(1)} along the true flow, ${still.toFixed(1)} without it`,
      );
      expect(aligned).toBeLessThan(still / 10);
      // The pan's integer flow copies pixels: only the codec's noise is left. The zoom's resamples
      // (bilinear here, bicubic from the photo in the clip): a detailed picture loses some sharpness.
      expect(aligned).toBeLessThan(t < CLIP.zoomFrom ? 10 : 100);
    }
    // The pan is a pure integer translation: the true flow is (-3, 0) everywhere.
    const pan = trueFlow(10, 11);
    expect(pan.data.every((v, i) => v === (i % 2 === 0 ? -3 : 0))).toBe(true);
  });

  it.each(['medium', 'fast'] as const)('DIS (%s) finds it: mean end-point error against the true flow', (preset) => {
    const errors: number[] = [];
    for (const t of PAIRS) {
      const started = performance.now();
      const data = loaded.ok
        ? loaded.addon.opticalFlow({ from: frames.get(t - 1)!.grey, to: frames.get(t)!.grey, ...size, preset })
        : new Float32Array();
      const ms = performance.now() - started;
      const truth = trueFlow(t - 1, t);
      const epe = endPointError({ ...size, data }, truth, truth.inside);
      console.log(
        `DIS ${preset}, frames ${t - 1} -> ${t} (${t < CLIP.zoomFrom ? 'pan' : 'zoom'}), 640x360: EPE ${epe.toFixed(3)} px in ${ms.toFixed(0)} ms`,
      );
      errors.push(epe);
    }
    const mean = errors.reduce((a, b) => a + b, 0) / errors.length;
    console.log(`DIS ${preset}: mean EPE ${mean.toFixed(3)} px`);
    expect(mean).toBeLessThan(preset === 'medium' ? 0.25 : 0.4);
  });

  it('the estimated backward flow aligns frame t-1 with frame t (up to the blur of resampling a sub-pixel flow)', () => {
    for (const t of [30, 60]) {
      const backwardTrue = trueFlow(t, t - 1);
      const { weights } = consistencyMasks(trueFlow(t - 1, t), backwardTrue);
      const data = loaded.ok
        ? loaded.addon.opticalFlow({ from: frames.get(t)!.grey, to: frames.get(t - 1)!.grey, ...size, preset: 'medium' })
        : new Float32Array();
      const truth = { ...trueFlow(t, t - 1), data: backwardTrue.data };
      expect(endPointError({ ...size, data }, truth, truth.inside)).toBeLessThan(0.25);
      const still = { ...size, data: new Float32Array(size.width * size.height * 2) };
      const estimated = warpingError(frames.get(t - 1)!.rgb, frames.get(t)!.rgb, { ...size, data }, weights);
      expect(estimated).toBeLessThan(warpingError(frames.get(t - 1)!.rgb, frames.get(t)!.rgb, still, weights) / 10);
    }
  });
});
