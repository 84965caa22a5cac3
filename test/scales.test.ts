/**
 * Coarse to fine: the schedule, the bilinear carry between scales, and a
 * render over three scales (final size, continuity, time accounted).
 */
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resizeBilinear, type Backend } from '@nst/core';
import { jobFromOptions, prepareJob, runJobGroup, coarseSides, type IterationReport, type RenderResult } from '@nst/job';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { createTfjsBackend } from '@nst/tfjs';
import { newDir, writeTestImage } from '@nst/test-helpers';
import { testWeights } from './reference/random-weights.js';

describe('the scale schedule', () => {
  it('auto: a factor sqrt(2) apart from about 256 px; explicit lists are checked', () => {
    expect(coarseSides('auto', 1024)).toEqual([256, 362, 512, 724]);
    expect(coarseSides('auto', 400)).toEqual([283]);
    expect(coarseSides('auto', 256)).toEqual([]);
    expect(
      coarseSides(
        [
          { kind: 'longest', longest: 256 },
          { kind: 'longest', longest: 512 },
          { kind: 'longest', longest: 1024 },
        ],
        1024,
      ),
    ).toEqual([256, 512]);
    expect(() => coarseSides([{ kind: 'longest', longest: 2048 }], 1024)).toThrow(expect.objectContaining({ field: 'scales' }));
    expect(() =>
      coarseSides(
        [
          { kind: 'longest', longest: 512 },
          { kind: 'longest', longest: 256 },
        ],
        1024,
      ),
    ).toThrow(expect.objectContaining({ field: 'scales' }));
  });

  it('bilinear upsampling reproduces a linear ramp at the half-pixel centres', () => {
    const from = { width: 4, height: 3 };
    const to = { width: 8, height: 6 };
    // f(x, y) = 2x + 3y + c in source pixel-centre coordinates.
    const f = (x: number, y: number, c: number) => 2 * x + 3 * y + c;
    const src = new Float32Array(4 * 3 * 3);
    for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) for (let c = 0; c < 3; c++) src[(y * 4 + x) * 3 + c] = f(x, y, c);
    const out = resizeBilinear(src, 1, from, to);
    // Interior target pixels (not clamped at the border) sample the ramp at ((t + 0.5) / 2 - 0.5).
    for (let y = 1; y < 5; y++)
      for (let x = 1; x < 7; x++)
        for (let c = 0; c < 3; c++) expect(out[(y * 8 + x) * 3 + c]).toBeCloseTo(f((x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5, c), 5);
    expect(resizeBilinear(src, 1, from, from)).toEqual(src);
  });
});

describe('a render over three scales', () => {
  it('ends at the final size, each scale starts near where the last ended, and the time covers every scale', async () => {
    const dir = newDir('nst-scales-');
    const content = await writeTestImage(path.join(dir, 'content.png'), 64, 48, 1);
    const style = await writeTestImage(path.join(dir, 'style.png'), 64, 48, 5);
    const out = path.join(dir, 'out.png');
    const job = (extra: Record<string, string>) =>
      jobFromOptions({
        content,
        style,
        out,
        size: '48x36',
        styleLayers: 'conv1_1,conv2_1',
        contentLayers: 'conv2_2',
        printEvery: '1',
        saveEvery: '0',
        ...extra,
      });
    const weights = testWeights(3, 4);
    // Any backend does (the scales live in render); the native one is quicker.
    const backend: Backend = loadNativeAddon().ok ? await createNativeBackend('cpu') : await createTfjsBackend();
    await backend.loadWeights(weights);
    try {
      const engine = { backend, weights };
      const scales = await prepareJob(job({ scales: '16,24', scaleIterations: '6,6,4', optimizer: 'lbfgs' }), weights);
      expect(scales.steps.map((s) => `${s.size.width}x${s.size.height}`)).toEqual(['16x12', '24x18', '48x36']);
      const starts: number[] = [];
      const ends: number[] = [];
      const coarse: RenderResult[] = [];
      let scale = -1;
      const result = await runJobGroup(engine, [scales], {
        onScale: (k) => (scale = k),
        onReport: (r: IterationReport) => {
          if (r.iteration === 0) starts[scale] = r.losses[0].total;
          ends[scale] = r.losses[0].total;
        },
        onScaleDone: (_k, r) => coarse.push(r),
      });
      const meta = await sharp(out).metadata();
      expect([meta.width, meta.height]).toEqual([48, 36]);
      expect(result.images.length).toBe(48 * 36 * 3);

      // The same size from its own noise start: the carried image starts far lower.
      const direct = await prepareJob(job({ iterations: '4', optimizer: 'lbfgs', out: path.join(dir, 'direct.png') }), weights);
      let directStart = 0;
      const directResult = await runJobGroup(engine, [direct], { onReport: (r) => (directStart ||= r.losses[0].total) });
      console.log(
        `scales: start/end J per scale ${starts.map((s, k) => `${s.toExponential(2)}/${ends[k].toExponential(2)}`).join(', ')}; ` +
          `final-size start from noise ${directStart.toExponential(2)}; time ${coarse.map((r) => r.seconds.toFixed(2)).join(' + ')} + final = ${result.seconds.toFixed(2)} s`,
      );
      // Continuity: a scale starts within a small factor of where the previous one ended (the
      // upsampled image is a little blurred), far below where the first one started.
      for (let k = 1; k < 3; k++) {
        expect(starts[k]).toBeLessThan(3 * ends[k - 1]);
        expect(starts[k]).toBeLessThan(starts[0] / 5);
      }
      expect(starts[2]).toBeLessThan(0.5 * directStart);
      expect(ends[2]).toBeLessThan(directResult.finalLosses[0].total);
      // Seconds and evaluations cover every scale.
      const coarseSeconds = coarse.reduce((a, r) => a + r.seconds, 0);
      expect(coarse).toHaveLength(2);
      expect(result.seconds).toBeGreaterThan(coarseSeconds);
      expect(result.evaluations).toBeGreaterThanOrEqual(6 + 6 + 4);
    } finally {
      backend.dispose();
    }
  });

  it('an interrupted coarse scale resumes at that scale', async () => {
    const dir = newDir('nst-scales-resume-');
    const content = await writeTestImage(path.join(dir, 'content.png'), 64, 48, 2);
    const style = await writeTestImage(path.join(dir, 'style.png'), 64, 48, 6);
    const out = path.join(dir, 'out.png');
    const config = jobFromOptions({
      content,
      style,
      out,
      size: '48x36',
      styleLayers: 'conv1_1',
      contentLayers: 'conv2_2',
      printEvery: '1',
      saveEvery: '0',
      scales: '16,24',
      scaleIterations: '3,50,3',
      resume: 'true',
    });
    const weights = testWeights(4, 4);
    const backend: Backend = loadNativeAddon().ok ? await createNativeBackend('cpu') : await createTfjsBackend();
    await backend.loadWeights(weights);
    try {
      const engine = { backend, weights };
      // Stop in the middle scale.
      const controller = new AbortController();
      let scale = -1;
      const first = await runJobGroup(
        engine,
        [await prepareJob(config, weights)],
        {
          onScale: (k) => (scale = k),
          onReport: (r) => scale === 1 && r.iteration >= 2 && controller.abort(),
        },
        controller.signal,
      );
      expect(first.interrupted).toBe(true);
      // Again with resume: the first scale is skipped, the middle one resumes.
      const seen: number[] = [];
      let resumedAt = -1;
      const resumed = await prepareJob(config, weights);
      expect(resumed.resumeAt).toEqual({ scale: 1, iteration: first.iterations, fromCheckpoint: true });
      const second = await runJobGroup(engine, [resumed], {
        onScale: (k) => seen.push(k),
        onResumed: (i) => (resumedAt = i),
      });
      expect(seen).toEqual([1, 2]);
      expect(resumedAt).toBeGreaterThanOrEqual(2);
      expect(second.interrupted).toBe(false);
      expect(second.images.length).toBe(48 * 36 * 3);
    } finally {
      backend.dispose();
    }
  });
});
