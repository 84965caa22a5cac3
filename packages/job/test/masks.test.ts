/**
 * Spatial control above the seam (issue 25): the mask options' parsing and
 * checks, a mask file decoded to weights (checked against an independent
 * computation from the file's own pixels), the masks of each scale at its
 * size in the Targets, and masks in the packing key, the fingerprint, the
 * settings and the output checks.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PREPROCESSING, type WeightSet } from '@nst/core';
import {
  inputDigests,
  jobFingerprint,
  jobFromOptions,
  jobInputs,
  loadMask,
  loadScaleInputs,
  maskShape,
  maskedField,
  NO_MASK,
  packingKey,
  planScales,
  probeImage,
  refuseOverwritingInputs,
  jobOutputs,
  resultSettings,
  type JobConfig,
} from '@nst/job';
import { newDir, writeTestImage } from '@nst/test-helpers';

const weights = { sha256: undefined, source: 'random:1', format: 'random' } as unknown as WeightSet;

/** An RGBA PNG from a function of the pixel: [r, g, b, a] in 0..255. */
async function rgbaPng(file: string, width: number, height: number, pixel: (x: number, y: number) => number[]): Promise<string> {
  const data = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 4);
  await sharp(data, { raw: { width, height, channels: 4 } })
    .png()
    .toFile(file);
  return file;
}

/** The weight of one pixel as the issue defines it, in float64: luminance (Rec. 601 luma of the sRGB values) times alpha. */
const weightOf = ([r, g, b, a]: number[]) => ((0.299 * r + 0.587 * g + 0.114 * b) / 255) * (a / 255);

describe('the mask options', () => {
  const base = { content: 'c.png', style: ['a.png', 'b.png'], out: 'o.png' };

  it('one mask (or none) per style, in order; none and - mean no mask for that style', () => {
    const job = jobFromOptions({ ...base, styleMask: ['sky.png', 'none'], styleRegion: 'r1.png,-', contentMask: 'face.png' });
    expect(job.styleMask).toEqual(['sky.png', NO_MASK]);
    expect(job.styleRegion).toEqual(['r1.png', NO_MASK]);
    expect(job.contentMask).toBe('face.png');
    expect(maskedField(job)).toBe('styleMask');
    expect(maskedField(jobFromOptions({ ...base, styleMask: 'none,none' }))).toBeUndefined();
    expect(maskedField(jobFromOptions({ ...base, contentMask: 'face.png' }))).toBe('contentMask');
    expect(maskedField(jobFromOptions(base))).toBeUndefined();
  });

  it('refuses a count that differs from the styles, naming the option', () => {
    const err = (values: Record<string, unknown>) => {
      try {
        jobFromOptions({ ...base, ...values } as never);
      } catch (e) {
        return e as { field: string; detail: string };
      }
      throw new Error('no error');
    };
    const e = err({ styleMask: 'sky.png' });
    expect(e.field).toBe('styleMask');
    expect(e.detail).toBe('1 style masks given for 2 style images (one per style, in order; none for a style without)');
    expect(err({ styleRegion: ['a', 'b', 'c'] }).field).toBe('styleRegion');
    expect(err({ contentMask: ['a.png', 'b.png'] }).field).toBe('contentMask');
  });
});

describe('a mask file', () => {
  const dir = newDir('nst-masks-');

  it("is its pixels' luminance times their alpha, in [0, 1]: white exactly 1", async () => {
    // Every kind of pixel: colours, greys, translucent, transparent.
    const pixel = (x: number, y: number) => [
      (x * 37 + y * 11) % 256,
      (x * 13 + y * 101) % 256,
      (x * 71 + y * 5) % 256,
      y < 2 ? 255 : (x * 29 + y * 17) % 256,
    ];
    const file = await rgbaPng(path.join(dir, 'any.png'), 20, 10, pixel);
    const mask = await loadMask(file, 'styleMask', { width: 20, height: 10 });
    expect(mask).toBeInstanceOf(Float32Array);
    for (let y = 0; y < 10; y++) for (let x = 0; x < 20; x++) expect(mask[y * 20 + x]).toBeCloseTo(weightOf(pixel(x, y)), 6);
    const white = await rgbaPng(path.join(dir, 'white.png'), 7, 5, () => [255, 255, 255, 255]);
    expect([...(await loadMask(white, 'styleMask', { width: 3, height: 2 }))]).toEqual([1, 1, 1, 1, 1, 1]);
    // A greyscale JPEG without alpha: its grey levels.
    const jpeg = path.join(dir, 'grey.jpg');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 128, g: 128, b: 128 } } })
      .jpeg({ quality: 100 })
      .toFile(jpeg);
    for (const v of await loadMask(jpeg, 'contentMask', { width: 8, height: 8 })) expect(v).toBeCloseTo(128 / 255, 2);
  });

  it('resized to the size asked: uniform parts keep their weight, edges lie between, the mean is kept', async () => {
    // Left half red and opaque, right half white at alpha 128; resized to a half (each output pixel: 2x2 of these).
    const pixel = (x: number) => (x < 20 ? [255, 0, 0, 255] : [255, 255, 255, 128]);
    const file = await rgbaPng(path.join(dir, 'halves.png'), 40, 30, (x) => pixel(x));
    const mask = await loadMask(file, 'styleMask', { width: 20, height: 15 });
    const left = weightOf(pixel(0));
    const right = weightOf(pixel(39));
    for (let y = 0; y < 15; y++)
      for (let x = 0; x < 20; x++) {
        const v = mask[y * 20 + x];
        if (x < 8) expect(v).toBeCloseTo(left, 2);
        else if (x >= 12) expect(v).toBeCloseTo(right, 2);
        // No ringing at the edge: between the two sides.
        else expect(v).toBeGreaterThanOrEqual(Math.min(left, right) - 1 / 255);
        expect(v).toBeLessThanOrEqual(Math.max(left, right) + 1 / 255);
      }
    const mean = mask.reduce((a, b) => a + b, 0) / mask.length;
    expect(mean).toBeCloseTo((left + right) / 2, 2);
  });

  it('that is not an image is refused naming the option and the file', async () => {
    const file = path.join(dir, 'notes.png');
    writeFileSync(file, 'not an image');
    await expect(loadMask(file, 'styleMask', { width: 4, height: 4 })).rejects.toMatchObject({ field: 'styleMask', code: 'unreadable' });
    await expect(probeImage(file, 'contentMask')).rejects.toThrow(/cannot read '.*notes\.png' as an image/);
  });
});

describe('masks in a job', () => {
  const dir = newDir('nst-masked-job-');
  const file = (name: string) => path.join(dir, name);

  async function setup() {
    const content = await writeTestImage(file('content.png'), 64, 48, 1);
    const a = await writeTestImage(file('a.png'), 40, 30, 2);
    const b = await writeTestImage(file('b.png'), 30, 40, 3);
    // Top third white (the "sky"), the rest black; its complement; a region mask for style b.
    const sky = await rgbaPng(file('sky.png'), 64, 48, (_, y) => (y < 16 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const rest = await rgbaPng(file('rest.png'), 64, 48, (_, y) => (y < 16 ? [0, 0, 0, 255] : [255, 255, 255, 255]));
    const region = await rgbaPng(file('region.png'), 30, 40, (x) => (x < 15 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const face = await rgbaPng(file('face.png'), 64, 48, (x) => [x * 4, x * 4, x * 4, 255]);
    return { content, a, b, sky, rest, region, face };
  }

  it('each scale gets its masks at its size: the style masks and content mask at the output, a region at its style', async () => {
    const f = await setup();
    const job = jobFromOptions({
      content: f.content,
      style: [f.a, f.b],
      styleMask: [f.sky, f.rest],
      styleRegion: ['none', f.region],
      contentMask: f.face,
      out: file('out.png'),
      size: '64',
      scales: '32',
      styleScale: '0.5',
    });
    const { steps } = planScales(job, { width: 64, height: 48 }, [
      { width: 40, height: 30 },
      { width: 30, height: 40 },
    ]);
    expect(steps.map((s) => s.size)).toEqual([
      { width: 32, height: 24 },
      { width: 64, height: 48 },
    ]);
    for (const step of steps) {
      const { width, height } = step.size;
      const { targets } = await loadScaleInputs(job, step, PREPROCESSING.caffeBgr);
      const [sa, sb] = targets.styles;
      expect(sa.mask).toHaveLength(width * height);
      expect(sb.mask).toHaveLength(width * height);
      expect(sa.region).toBeUndefined();
      expect(sb.region).toHaveLength(step.styleSizes[1].width * step.styleSizes[1].height);
      expect(targets.contentMask).toHaveLength(width * height);
      // The sky's rows: 1 above a third of the height, 0 below, a soft row at most between; its complement the other way.
      const row = (m: Float32Array, y: number) => m[y * width + Math.floor(width / 2)];
      expect(row(sa.mask!, 0)).toBe(1);
      expect(row(sa.mask!, height - 1)).toBe(0);
      expect(row(sb.mask!, 0)).toBe(0);
      expect(row(sb.mask!, height - 1)).toBe(1);
      for (let y = 0; y < height; y++) expect(row(sa.mask!, y) + row(sb.mask!, y)).toBeCloseTo(1, 2);
      // The content mask's ramp runs left to right at every scale.
      const cm = targets.contentMask!;
      expect(cm[width - 1]).toBeGreaterThan(cm[0] + 0.5);
      // The region: the left half of style b at its size.
      const sw = step.styleSizes[1].width;
      expect(sb.region![0]).toBe(1);
      expect(sb.region![sw - 1]).toBe(0);
    }
  });

  it('counts what masks add to the memory plan: a region per distinct style mask, and the content mask', () => {
    const job = (o: Record<string, unknown>) =>
      jobFromOptions({ content: 'c.png', style: ['a.png', 'b.png', 'c.png'], out: 'o.png', ...o });
    expect(maskShape(job({}))).toEqual({ regions: 0, contentMask: false });
    expect(maskShape(job({ styleMask: ['none', '-', 'none'] }))).toEqual({ regions: 0, contentMask: false });
    expect(maskShape(job({ styleMask: ['sky.png', 'rest.png', 'sky.png'] }))).toEqual({ regions: 2, contentMask: false });
    expect(maskShape(job({ styleMask: ['sky.png', 'none', 'none'], contentMask: 'face.png' }))).toEqual({ regions: 2, contentMask: true });
    expect(maskShape(job({ styleRegion: ['r.png', 'none', 'none'] }))).toEqual({ regions: 1, contentMask: false });
  });

  it('refuses a black style region (it selects nothing of its painting), naming the option and the file', async () => {
    const f = await setup();
    const black = await rgbaPng(file('black.png'), 30, 40, () => [0, 0, 0, 255]);
    const job = jobFromOptions({ content: f.content, style: [f.a], styleRegion: [black], out: file('out.png'), size: '64' });
    const { steps } = planScales(job, { width: 64, height: 48 }, [{ width: 40, height: 30 }]);
    await expect(loadScaleInputs(job, steps[0], PREPROCESSING.caffeBgr)).rejects.toMatchObject({
      code: 'invalid',
      field: 'styleRegion',
      message: expect.stringContaining('black.png is black'),
    });
  });

  it('keeps the masks under a preset and colour preservation (they act on the styles and the output, not on the masks)', async () => {
    const f = await setup();
    for (const preserveColors of ['luminance', 'histogram']) {
      const job = jobFromOptions({
        content: f.content,
        style: [f.a, f.b],
        styleMask: [f.sky, f.rest],
        contentMask: f.face,
        out: file('out.png'),
        size: '64',
        preset: 'hq',
        preserveColors,
      });
      expect(job.optimizer).toBe('lbfgs');
      const { steps } = planScales(job, { width: 64, height: 48 }, [
        { width: 40, height: 30 },
        { width: 30, height: 40 },
      ]);
      const step = steps.at(-1)!;
      const { targets } = await loadScaleInputs(job, step, PREPROCESSING.caffeBgr);
      const plain = await loadScaleInputs({ ...job, styleMask: undefined, contentMask: undefined }, step, PREPROCESSING.caffeBgr);
      // The same images as without masks, and the masks beside them.
      expect(targets.content).toEqual(plain.targets.content);
      expect(targets.styles.map((s) => s.image)).toEqual(plain.targets.styles.map((s) => s.image));
      expect(targets.styles.map((s) => s.mask?.length)).toEqual([64 * 48, 64 * 48]);
      expect(targets.contentMask).toHaveLength(64 * 48);
    }
  });

  it('separates packing keys, changes the fingerprint with the bytes, and records the masks in the settings', async () => {
    const f = await setup();
    const size = { width: 64, height: 48 };
    const at = { scale: 0, iteration: 0 };
    const plain = jobFromOptions({ content: f.content, style: [f.a, f.b], out: file('o.png') });
    const masked = jobFromOptions({ content: f.content, style: [f.a, f.b], styleMask: [f.sky, f.rest], out: file('o.png') });
    const swapped = { ...masked, styleMask: [f.rest, f.sky] } as JobConfig;
    const region = { ...masked, styleRegion: ['none', f.region] } as JobConfig;
    const content = { ...plain, contentMask: f.face } as JobConfig;
    const keys = [plain, masked, swapped, region, content].map((j) => packingKey(j, size, at));
    expect(new Set(keys).size).toBe(5);
    // The same masks for another photo: one batch.
    expect(packingKey({ ...masked, content: f.a, out: file('p.png') }, size, at)).toBe(keys[1]);

    const fingerprint = async (j: JobConfig) => jobFingerprint(j, weights, size, 'result', await inputDigests(j));
    const before = await fingerprint(masked);
    // A job without masks keeps the fingerprint it had before masks existed (the options are left out).
    expect(JSON.stringify(await inputDigests(plain))).not.toMatch(/styleMask/);
    expect(await fingerprint(plain)).not.toBe(before);
    // The mask's bytes changed under the same name: another fingerprint.
    await rgbaPng(f.sky, 64, 48, (_, y) => (y < 20 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const after = await fingerprint(masked);
    expect(after).not.toBe(before);
    // none in a list stands as itself.
    const digests = await inputDigests(region);
    expect(digests.styleRegion).toEqual(['none', expect.stringMatching(/^[0-9a-f]{64}$/)]);
    const settings = resultSettings(region, weights, size, after, digests);
    expect(settings.options.styleRegion).toEqual(['none', path.resolve(f.region)]);
    expect(settings.inputs.filter((i) => i.field === 'styleRegion').map((i) => i.file)).toEqual([path.resolve(f.region)]);
    expect(settings.inputs.filter((i) => i.field === 'styleMask')).toHaveLength(2);
    // What the settings record parses back to the same job.
    expect(jobFromOptions({ ...settings.options, content: f.content, out: file('o.png') } as never).styleRegion).toEqual(
      region.styleRegion,
    );
  });

  it('masks are inputs: an output over one is refused', async () => {
    const f = await setup();
    const job = jobFromOptions({ content: f.content, style: [f.a, f.b], styleMask: [f.sky, 'none'], contentMask: f.face, out: f.sky });
    const inputs = await jobInputs(job, weights);
    expect(inputs.filter((i) => i.field !== 'content' && i.field !== 'style').map((i) => [i.field, path.basename(i.file)])).toEqual([
      ['styleMask', 'sky.png'],
      ['contentMask', 'face.png'],
    ]);
    await expect(refuseOverwritingInputs(inputs, jobOutputs(job))).rejects.toThrow(/would overwrite the style mask/);
    const other = { ...job, out: f.face };
    await expect(refuseOverwritingInputs(await jobInputs(other, weights), jobOutputs(other))).rejects.toThrow(
      /would overwrite the content mask/,
    );
  });
});
