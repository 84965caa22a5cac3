import { describe, expect, it } from 'vitest';
import { DEFAULT_LOSS, resolveSize } from '@nst/core';
import {
  adamOf,
  formatOption,
  JOB_FIELDS,
  JOB_OPTIONS,
  jobFromOptions,
  lossOf,
  MAX_LOSS_WEIGHT,
  omittedFromSettings,
  isVideoOption,
  optionsFor,
  packingKey,
  type JobConfig,
  type OptionValue,
} from '@nst/job';

const base = { content: 'c.jpg', style: 's.jpg', out: 'o.png' };
const fieldError = (field: string, detail?: RegExp) =>
  expect.objectContaining({ field, ...(detail ? { detail: expect.stringMatching(detail) } : {}) });

describe('the one job description', () => {
  it("applies the notebook defaults (spec: 400x300 for its 4:3 photos, i.e. the longest side 400, each photo's aspect kept; 200 iterations, lr 2, alpha 10, beta 40)", () => {
    const job = jobFromOptions(base);
    expect(job.size).toEqual({ kind: 'longest', longest: 400 });
    expect(resolveSize(job.size, 640, 480, job.fit)).toEqual({ width: 400, height: 300 });
    expect(job.saveEvery).toBe(0);
    expect(job.iterations).toBe(200);
    expect(adamOf(job)).toEqual({ lr: 2, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    expect(lossOf(job)).toEqual(DEFAULT_LOSS);
    expect(job.resume).toBe(false);
    expect(job.weights).toBeUndefined();
  });

  it('takes text (CLI, CSV) and JSON values alike', () => {
    const fromText = jobFromOptions({
      content: ['c.jpg'],
      style: 'a.jpg,b.jpg',
      out: 'o.png',
      iterations: '30',
      lr: '0.5',
      resume: 'true',
    });
    const fromJson = jobFromOptions({ content: 'c.jpg', style: ['a.jpg', 'b.jpg'], out: 'o.png', iterations: 30, lr: 0.5, resume: true });
    expect(fromJson).toEqual(fromText);
    expect(fromText.style).toEqual(['a.jpg', 'b.jpg']);
    expect(fromText.iterations).toBe(30);
  });

  it('refuses unknown options, missing required ones and bad values, naming the field', () => {
    expect(() => jobFromOptions({ ...base, iteratons: '3' })).toThrow(fieldError('iteratons', /^'iteratons' is not a job option$/));
    expect(() => jobFromOptions({ content: 'c.jpg', out: 'o.png' })).toThrow(fieldError('style', /^is required$/));
    expect(() => jobFromOptions({ ...base, iterations: '1e3' })).toThrow(fieldError('iterations'));
    expect(() => jobFromOptions({ ...base, iterations: [1, 2] })).toThrow(fieldError('iterations', /^expected one value, got a list$/));
    expect(() => jobFromOptions({ ...base, pooling: 'min' })).toThrow(fieldError('pooling'));
    expect(() => jobFromOptions({ ...base, resume: 'yes' })).toThrow(fieldError('resume'));
    expect(() => jobFromOptions({ ...base, out: 'o.bmp' })).toThrow(fieldError('out', /no supported image extension/));
  });

  // What the HTTP API used to queue and a worker then failed: each is refused where the job is parsed.
  it('refuses every value the engines cannot take, before anything is queued or read', () => {
    const refused: [Record<string, OptionValue>, string, RegExp][] = [
      [{ alpha: '-1' }, 'alpha', /^expected a number >= 0, got -1$/],
      [{ lr: '0' }, 'lr', /^expected a positive number, got 0$/],
      [{ styleBlendWeights: '0' }, 'styleBlendWeights', /non-negative with a positive sum/],
      [{ styleScale: '1000' }, 'styleScale', /would resize the style images to 400000 pixels/],
      [{ beta: '1e308' }, 'beta', /too large/],
      [{ styleLayers: 'conv1_1:1e308' }, 'styleLayers', /too large/],
      [{ beta: '1e8', styleLayers: 'conv1_1:1e5' }, 'beta', /^100000000 times the weight 100000 of conv1_1 is too large/],
      [{ alpha: '0', beta: '0' }, 'beta', /both 0/],
      [{ noiseRatio: '1.5' }, 'noiseRatio', /not in 0\.\.1/],
      [{ styleBlendWeights: '1,2' }, 'styleBlendWeights', /^2 weights given for 1 style images$/],
      [{ bitDepth: '16', out: 'o.jpg' }, 'bitDepth', /cannot hold 16 bits/],
      [{ resume: 'true', fresh: 'true' }, 'fresh', /^resume and fresh together/],
      [{ fit: 'stretch' }, 'fit', /^'stretch' is not one of inside, contain, cover, fill, outside$/],
    ];
    for (const [values, field, detail] of refused)
      expect(() => jobFromOptions({ ...base, ...values }), field).toThrow(fieldError(field, detail));
    // The bound itself is taken.
    expect(jobFromOptions({ ...base, beta: String(MAX_LOSS_WEIGHT), styleLayers: 'conv1_1:1' }).beta).toBe(MAX_LOSS_WEIGHT);
  });
});

describe('the option table', () => {
  it('has exactly one entry per field of the job config', () => {
    // Compile time: the table's type maps every JobConfig key, and only those.
    type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
    const same: Same<keyof typeof JOB_OPTIONS, keyof JobConfig> = true;
    expect(same).toBe(true);
    // Run time: a parsed job has a value for each field that has a default or is required, and no other key.
    const job = jobFromOptions({
      ...base,
      styleBlendWeights: '1',
      styleScale: '1',
      scales: '256',
      scaleIterations: '5',
      weights: 'embedded',
      memory: '2048',
      firstFrameIterations: '50',
      frameRate: '24',
      styleMask: 'none',
      styleRegion: 'none',
      contentMask: 'face.png',
    });
    expect(Object.keys(job).sort()).toEqual([...JOB_FIELDS].sort());
    const shorts = JOB_FIELDS.flatMap((f) => (JOB_OPTIONS[f].short ? [JOB_OPTIONS[f].short] : []));
    expect(new Set(shorts).size).toBe(shorts.length);
  });

  it('says which front ends take each option (the CLI takes all but the video ones; files, weights, the worker-side schedule and a folder frame rate are not HTTP fields)', () => {
    const video = ['temporalWeight', 'firstFrameIterations', 'frameInit', 'flowPreset', 'frameRate'];
    expect(optionsFor('cli')).toEqual(JOB_FIELDS.filter((f) => !video.includes(f)));
    expect(JOB_FIELDS.filter((f) => !optionsFor('manifest').includes(f))).toEqual(['resume', 'fresh', 'weights', ...video]);
    expect(JOB_FIELDS.filter((f) => !optionsFor('http').includes(f))).toEqual([
      'out',
      'saveEvery',
      'checkpointEvery',
      'resume',
      'fresh',
      'weights',
      'frameRate',
    ]);
    // The HTTP API takes the video options (but the frame rate, which only a folder of frames needs) with a video upload.
    expect(JOB_FIELDS.filter((f) => isVideoOption(f))).toEqual(video);
    // nst video: a still's options but the masks, its output and the per-run switches, and the video ones.
    expect(JOB_FIELDS.filter((f) => !optionsFor('video').includes(f))).toEqual([
      'styleMask',
      'styleRegion',
      'contentMask',
      'out',
      'saveEvery',
      'checkpointEvery',
      'resume',
    ]);
    // Files the HTTP API takes as uploads: the images and the masks.
    expect(JOB_FIELDS.filter((f) => JOB_OPTIONS[f].upload)).toEqual(['content', 'style', 'styleMask', 'styleRegion', 'contentMask']);
  });

  it("leaves the video options out of a still's fingerprint and settings, so that results made before video keep theirs", () => {
    const still = jobFromOptions(base);
    expect(lossOf(still).temporalWeight).toBeUndefined();
    for (const field of ['temporalWeight', 'firstFrameIterations', 'frameInit', 'flowPreset', 'frameRate'] as const)
      expect(omittedFromSettings(field, still[field]), field).toBe(true);
    const frame = jobFromOptions({ ...base, temporalWeight: '100', frameInit: 'independent' });
    expect(lossOf(frame).temporalWeight).toBe(100);
    expect(omittedFromSettings('temporalWeight', frame.temporalWeight)).toBe(false);
    expect(omittedFromSettings('frameInit', frame.frameInit)).toBe(false);
    expect(omittedFromSettings('alpha', still.alpha)).toBe(false);
  });

  it('packs jobs only when every option but their inputs and outputs is equal', () => {
    const job = jobFromOptions(base);
    const size = { width: 400, height: 300 };
    const resumeAt = { scale: 0, iteration: 0 };
    const key = packingKey(job, size, resumeAt);
    // Another content, style and output: the same key.
    expect(
      packingKey({ ...job, content: 'd.jpg', style: ['t.jpg', 'u.jpg'], styleBlendWeights: [1, 3], out: 'p.png' }, size, resumeAt),
    ).toBe(key);
    // Any other option: another key (one changed value per field, from the table).
    const other: Partial<Record<keyof JobConfig, unknown>> = {
      styleScale: 2,
      // Masks are inputs, but jobs with different ones are not packed together.
      styleMask: ['sky.png'],
      styleRegion: ['left.png'],
      contentMask: 'face.png',
      size: { kind: 'longest', longest: 512 },
      fit: 'cover',
      fresh: true,
      contentLayers: [{ layer: 'conv2_2', weight: 1 }],
      styleLayers: [{ layer: 'conv1_1', weight: 1 }],
      pooling: 'max',
      init: 'content',
      resume: true,
      preset: 'hq',
      optimizer: 'lbfgs',
      preserveColors: 'luminance',
      scales: 'auto',
      scaleIterations: [3],
      bitDepth: 16,
      iccProfile: 'keep',
      weights: 'embedded',
      memory: 2048,
      tile: 192,
      frameInit: 'independent',
      flowPreset: 'fast',
      firstFrameIterations: 50,
      frameRate: 24,
    };
    for (const field of JOB_FIELDS) {
      if (JOB_OPTIONS[field].perItem) continue;
      const changed = field in other ? other[field] : (job[field] as number) + 1;
      expect(packingKey({ ...job, [field]: changed } as JobConfig, size, resumeAt), field).not.toBe(key);
    }
    expect(packingKey(job, { width: 300, height: 400 }, resumeAt)).not.toBe(key);
    expect(packingKey(job, size, { scale: 0, iteration: 20 })).not.toBe(key);
  });
});

describe('options as results record them', () => {
  it('formats every value as text its parser reads back to the same value, to the last digit', () => {
    const job = jobFromOptions({
      ...base,
      style: ['a.jpg', 'b.jpg'],
      styleBlendWeights: '1,3',
      styleScale: '0.7',
      size: '333x222',
      fit: 'cover',
      alpha: String(1 / 3),
      beta: '4.0000000000000036e-7',
      tvWeight: '1e-21',
      lr: String(Math.PI),
      contentLayers: 'conv4_2:0.1',
      styleLayers: `conv1_1:${1 / 7},conv5_1:2e-9`,
      noiseRatio: '0.3',
      seed: '4294967295',
      scales: '100,200x150',
      scaleIterations: '3,4,5',
      init: 'content',
      bitDepth: '16',
    });
    const again: Record<string, OptionValue> = {};
    for (const field of JOB_FIELDS) if (job[field] !== undefined) again[field] = formatOption(field, job[field]);
    expect(jobFromOptions(again)).toEqual(job);
    expect(again.size).toBe('333x222');
    expect(again.scales).toBe('100,200x150');
    expect(jobFromOptions({ ...base, scales: 'auto' }).scales).toBe('auto');
    expect(formatOption('scales', 'auto')).toBe('auto');
  });
});
