/**
 * Masks (issue 25) through the CLI and the pipeline, where no engine needs
 * to implement them: every mistake is one line naming the flag, and a
 * masked job is never rendered without its masks: refused on a backend
 * that does not implement them, and where it would be tiled (tile sessions
 * take no masks). test/masks-regions.test.ts renders with masks.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { Backend } from '@nst/core';
import { jobFromOptions, planGroup, prepareJob, type Engine } from '@nst/job';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { createTfjsBackend } from '@nst/tfjs';
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
    // Every engine here lacks masks (until the engines implement them): refused by name, never rendered unmasked.
    for (const backend of ['cpu', 'tfjs']) {
      if (backend === 'cpu' && !loadNativeAddon().ok) continue;
      const r = run('--backend', backend, '--style-mask', sky, rest, '--content-mask', sky);
      if (r.status === 0) {
        // An engine that implements masks renders the job.
        expect(existsSync(out)).toBe(true);
        continue;
      }
      expectUserError(r, new RegExp(`^nst: --style-mask: the ${backend} backend does not implement masks`));
      expectUserError(run('--backend', backend, '--content-mask', sky), /^nst: --content-mask: the .* backend does not implement masks/);
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

  it('refuses a masked job on a backend without masks, naming the backend and the mask option', async () => {
    const backend = await createTfjsBackend();
    try {
      const engine: Engine = { backend, weights };
      expect(backend.supportsMasks).toBeFalsy();
      const job = await masked();
      expect(() => planGroup(engine, [job], 0)).toThrow(
        expect.objectContaining({
          code: 'unsupported',
          field: 'styleMask',
          detail: expect.stringMatching(/^the tfjs backend does not implement masks/),
        }),
      );
      // Without masks the same job plans.
      const plain = await prepareJob({ ...(await masked()).job, styleMask: undefined }, weights, { dryRun: true });
      expect(planGroup(engine, [plain], 0).tiled).toBeUndefined();
    } finally {
      backend.dispose();
    }
  });

  it.runIf(available(loadNativeAddon().ok, 'the native addon is not built'))(
    'refuses a masked job that would be tiled (--tile N, or auto over the budget), where the same job without masks tiles',
    async () => {
      const native = await createNativeBackend('cpu');
      try {
        // The cpu engine with masks as the native helper's branch gives it: what remains to refuse is tiling.
        const backend = Object.create(native, { supportsMasks: { value: true } }) as Backend;
        const engine: Engine = { backend, weights };
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
        // A budget between the tiled and the untiled plans.
        expect(plainTiled.peak).toBeLessThan(untiled.untiledPeak);
        const tight: Engine = { ...engine, machine: { memoryBytes: Math.floor((plainTiled.peak + untiled.untiledPeak) / 2) } };
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
