/**
 * Masks (issue 25) through the CLI and the pipeline: every mistake is one
 * line naming the flag; the engines that implement masks (cpu fp32, tfjs)
 * render a masked job, and a masked job is never rendered without its
 * masks: refused on a backend that does not implement them (cpu bf16) and
 * where it would be tiled (tile sessions take no masks).
 * test/masks-regions.test.ts checks that the masks act.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { jobFromOptions, planGroup, prepareJob, type Engine } from '@nst/job';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { available, cliBuilt, newDir, nst, writeTestImage, type CliResult } from '@nst/test-helpers';
import { testWeights } from './reference/random-weights.js';

function expectUserError(r: CliResult, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(
    lines.filter((l) => l.startsWith('nst: ')),
    r.stderr,
  ).toHaveLength(1);
  expect(r.stderr).not.toMatch(/internal error|^\s+at /m);
  expect(lines.at(-1)).toMatch(pattern);
}

async function halves(file: string, width: number, height: number, top: boolean): Promise<string> {
  const data = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) data.fill(y < height / 2 === top ? 255 : 0, y * width, (y + 1) * width);
  await sharp(data, { raw: { width, height, channels: 1 } })
    .png()
    .toFile(file);
  return file;
}

describe.runIf(available(cliBuilt, 'packages/cli/dist is not built (run `npm run build`)'))('nst render with masks', () => {
  const dir = newDir('nst-masks-cli-');
  const file = (name: string) => path.join(dir, name);
  const light = ['--weights', 'random:1', '--style-layers', 'conv1_1,conv2_1', '--content-layers', 'conv2_1', '--size', '16x12', '-n', '2'];

  it('--style-mask, --style-region and --content-mask: a wrong count, a missing file, a file that is no image, an engine without masks: one line naming the flag, nothing written', async () => {
    const content = await writeTestImage(file('content.png'), 32, 24, 1);
    const a = await writeTestImage(file('a.png'), 32, 24, 2);
    const b = await writeTestImage(file('b.png'), 32, 24, 3);
    const sky = await halves(file('sky.png'), 32, 24, true);
    const rest = await halves(file('rest.png'), 32, 24, false);
    const notImage = file('notes.png');
    writeFileSync(notImage, 'not an image');
    const out = file('out.png');
    const run = (...flags: string[]) => nst(['render', ...light, '-c', content, '-s', a, '-s', b, '-o', out, ...flags]);
    expectUserError(
      run('--style-mask', sky),
      /^nst: --style-mask: 1 style masks given for 2 style images \(one per style, in order; none for a style without\)$/,
    );
    expectUserError(run('--style-region', sky, rest, rest), /^nst: --style-region: 3 style regions given for 2 style images/);
    expectUserError(run('--style-mask', sky, file('gone.png')), /^nst: --style-mask: no such file '.*gone\.png'$/);
    expectUserError(run('--content-mask', file('gone.png')), /^nst: --content-mask: no such file '.*gone\.png'$/);
    expectUserError(run('--style-region', 'none', notImage), /^nst: --style-region: cannot read '.*notes\.png' as an image/);
    // The output may not land on a mask.
    expectUserError(
      nst(['render', ...light, '-c', content, '-s', a, '-s', b, '--style-mask', sky, rest, '-o', rest]),
      /^nst: --out: '.*rest\.png' would overwrite the style mask '.*rest\.png': choose another output$/,
    );
    // The engines with masks render the job (test/masks-regions.test.ts checks that the masks act)...
    for (const backend of ['cpu', 'tfjs']) {
      if (backend === 'cpu' && !available(loadNativeAddon().ok, 'the native addon is not built')) continue;
      rmSync(out, { force: true });
      const r = run('--backend', backend, '--style-mask', sky, rest, '--content-mask', sky);
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(out)).toBe(true);
    }
    // ...one without them (cpu bf16: no guided Grams) refuses by name, never rendering unmasked. oneDNN runs bf16 on
    // AVX-512 where the processor lacks native bf16 when the features are forced.
    if (available(loadNativeAddon().ok, 'the native addon is not built')) {
      rmSync(out, { force: true });
      const bf16 = (...flags: string[]) =>
        nst(['render', ...light, '-c', content, '-s', a, '-s', b, '-o', out, '--backend', 'cpu', '--precision', 'bf16', ...flags], {
          NST_CPU_FEATURES: 'avx512_bf16',
        });
      expectUserError(
        bf16('--style-mask', sky, rest),
        /^nst: --style-mask: masks \(spatial control\) are not implemented by cpu \(.* bf16/,
      );
      expectUserError(bf16('--content-mask', sky), /^nst: --content-mask: masks \(spatial control\) are not implemented by cpu/);
      expect(existsSync(out)).toBe(false);
    }
    // none for every style is no mask: it renders.
    const plain = run('--backend', 'tfjs', '--style-mask', 'none', '-');
    expect(plain.status, plain.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
  });
});

describe('the pipeline never renders a masked job without its masks', () => {
  const dir = newDir('nst-masks-plan-');
  const weights = testWeights(1, 4);

  async function masked(extra: Record<string, string> = {}) {
    const content = await writeTestImage(path.join(dir, 'content.png'), 64, 48, 1);
    const style = await writeTestImage(path.join(dir, 'style.png'), 64, 48, 2);
    const sky = await halves(path.join(dir, 'sky.png'), 64, 48, true);
    const job = jobFromOptions({
      content,
      style,
      styleMask: sky,
      out: path.join(dir, 'out.png'),
      size: '64',
      styleLayers: 'conv1_1,conv2_1',
      contentLayers: 'conv2_2',
      ...extra,
    });
    return prepareJob(job, weights, { dryRun: true });
  }

  it.runIf(available(loadNativeAddon().ok, 'the native addon is not built'))(
    'refuses a masked job on a backend without masks (cpu bf16), naming it and the mask option',
    async () => {
      const saved = process.env.NST_CPU_FEATURES;
      process.env.NST_CPU_FEATURES = 'avx512_bf16'; // where the processor lacks native bf16, oneDNN emulates it on AVX-512
      const backend = await createNativeBackend('cpu', { precision: 'bf16' }).finally(() => {
        if (saved === undefined) delete process.env.NST_CPU_FEATURES;
        else process.env.NST_CPU_FEATURES = saved;
      });
      try {
        const engine: Engine = { backend, weights };
        expect(backend.supportsMasks).toBe(false);
        const job = await masked();
        expect(() => planGroup(engine, [job], 0)).toThrow(
          expect.objectContaining({
            code: 'unsupported',
            field: 'styleMask',
            detail: expect.stringMatching(/^masks \(spatial control\) are not implemented by cpu \(.* bf16/),
          }),
        );
        // Without masks the same job plans.
        const plain = await prepareJob({ ...(await masked()).job, styleMask: undefined }, weights, { dryRun: true });
        expect(planGroup(engine, [plain], 0).tiled).toBeUndefined();
      } finally {
        backend.dispose();
      }
    },
  );

  it.runIf(available(loadNativeAddon().ok, 'the native addon is not built'))(
    'refuses a masked job that would be tiled (--tile N, or auto over the budget), where the same job without masks tiles',
    async () => {
      const native = await createNativeBackend('cpu');
      try {
        expect(native.supportsMasks).toBe(true);
        const engine: Engine = { backend: native, weights };
        // Large enough that tiles save memory (nothing is allocated: only planned).
        const tiled = await masked({ tile: '128', size: '1024' });
        expect(() => planGroup(engine, [tiled], 0)).toThrow(
          expect.objectContaining({
            code: 'unsupported',
            field: 'styleMask',
            detail: expect.stringMatching(/^masks are not supported by tiled renders/),
          }),
        );
        const plain = await prepareJob({ ...tiled.job, styleMask: undefined }, weights, { dryRun: true });
        const plainTiled = planGroup(engine, [plain], 0);
        expect(plainTiled.tiled).toBeDefined();
        // auto, with a budget the untiled plan passes: refused rather than tiled.
        const auto = await masked({ size: '1024' });
        const untiled = planGroup(engine, [auto], 0);
        expect(untiled.tiled).toBeUndefined();
        // A budget the untiled plan does not fit and tiles do (a forced tiling may plan more: it keeps every tile's net
        // when memory allows).
        const tight: Engine = { ...engine, machine: { memoryBytes: Math.floor(0.6 * untiled.untiledPeak) } };
        const plainAuto = await prepareJob({ ...auto.job, styleMask: undefined }, weights, { dryRun: true });
        expect(planGroup(tight, [plainAuto], 0).tiled).toBeDefined();
        expect(() => planGroup(tight, [auto], 0)).toThrow(
          expect.objectContaining({
            code: 'unsupported',
            field: 'styleMask',
            detail: expect.stringMatching(/does not fit the memory budget untiled/),
          }),
        );
      } finally {
        native.dispose();
      }
    },
  );
});
