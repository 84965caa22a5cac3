/**
 * The memory plan (issue 20) against the peak resident memory measured of
 * real renders: `nst plan --json` predicts, `nst render` (one iteration, the
 * process's VmHWM read as it exits, bench/tiling/peak.mjs) measures, at small
 * sizes, untiled and tile by tile: within 15%. And a render the plan tiles
 * (--tile) says so in one line and writes its picture. The built CLI: e2e.
 *
 * (Tiled, the plan counts the generated code of every tile shape's net in
 * full, where oneDNN shares much of it between shapes: at 320x240 in 6 tiles
 * of 128 px it is 13% high, in 20 tiles of 64 px, nine shapes, 19% high,
 * bench/RESULTS.md. The untiled engine's nets keep so little since the same
 * change that tiling below about 1024x768 needs more memory than untiled.)
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { available, cliBuilt, jsonLines, newDir, nstAsync, writeTestImage } from '@nst/test-helpers';
import { addon } from '../packages/native/test/helpers.js';

const PEAK = path.resolve(import.meta.dirname, '../bench/tiling/peak.mjs');

// The built CLI with the native cpu engine (under CI its absence fails: available()).
const nativeCpu = available(cliBuilt && addon !== undefined, 'the CLI or the native addon is not built (npm run build)');

describe.runIf(nativeCpu)('the memory plan against measured peaks (cpu, random full VGG-19)', () => {
  for (const tile of ['off', '128'] as const)
    it(`320x240, --tile ${tile}: the predicted peak is within 15% of the measured one`, async () => {
      const dir = newDir();
      const content = await writeTestImage(path.join(dir, 'c.png'), 320, 240, 1);
      const style = await writeTestImage(path.join(dir, 's.png'), 300, 260, 2);
      const flags = [
        '-c',
        content,
        '-s',
        style,
        '--size',
        '320x240',
        '-w',
        'random:1',
        '--backend',
        'cpu',
        '-o',
        path.join(dir, 'o.png'),
        '--tile',
        tile,
      ];
      const plan = await nstAsync(['plan', ...flags, '--json']);
      expect(plan.status, plan.stderr).toBe(0);
      const predicted = jsonLines(plan.stdout).find((e) => e.event === 'plan') as { peak: number; tiled?: { tiles: number } };
      expect(predicted.tiled?.tiles).toBe(tile === 'off' ? undefined : 6);
      const render = await nstAsync(['render', ...flags, '-n', '1'], undefined, { NODE_OPTIONS: `--import=${PEAK}` });
      expect(render.status, render.stderr).toBe(0);
      if (tile !== 'off') expect(render.stderr + render.stdout).toMatch(/tiling: 320x240 in 6 tiles of 128 px .*exact/);
      const measured = Number(/peak-rss-bytes (\d+)/.exec(render.stderr)?.[1]);
      const error = predicted.peak / measured - 1;
      console.log(
        `plan 320x240 --tile ${tile}: predicted ${(predicted.peak / 2 ** 20).toFixed(0)} MiB, measured ${(measured / 2 ** 20).toFixed(0)} MiB (${(100 * error).toFixed(1)}%)`,
      );
      expect(Math.abs(error)).toBeLessThanOrEqual(0.15);
    }, 300_000);

  it('--memory below the untiled plan: --dry-run prints the tiled plan and writes nothing; the render (--tile auto) tiles to fit its budget', async () => {
    const dir = newDir();
    const out = path.join(dir, 'o.png');
    const job = [
      '-c',
      await writeTestImage(path.join(dir, 'c.png'), 1024, 768, 3),
      '-s',
      await writeTestImage(path.join(dir, 's.png'), 300, 260, 4),
      '--size',
      '1024x768',
      '-w',
      'random:1',
      '--backend',
      'cpu',
      '-o',
      out,
    ];
    const untiled = await nstAsync(['plan', ...job, '--tile', 'off', '--json']);
    expect(untiled.status, untiled.stderr).toBe(0);
    const { untiledPeak } = jsonLines(untiled.stdout).find((e) => e.event === 'plan') as { untiledPeak: number };
    const memory = Math.floor((0.8 * untiledPeak) / 2 ** 20);
    const budget = ['--memory', String(memory), '--tile', 'auto'];

    const dry = await nstAsync(['render', ...job, ...budget, '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`budget ${memory}.0 MiB (--memory)`);
    expect(dry.stdout).toMatch(/untiled: about [\d.]+ [MG]iB, does not fit/);
    expect(dry.stdout).toMatch(/tiled: \d+ tiles? /);
    expect(existsSync(out)).toBe(false);

    const render = await nstAsync(['render', ...job, ...budget, '-n', '1'], undefined, { NODE_OPTIONS: `--import=${PEAK}` });
    expect(render.status, render.stderr).toBe(0);
    expect(render.stdout + render.stderr).toMatch(/tiling: 1024x768 in \d+ tiles? of \d+ px .*exact/);
    expect(existsSync(out)).toBe(true);
    // The render keeps to its budget, within the plan's stated 15%.
    const measured = Number(/peak-rss-bytes (\d+)/.exec(render.stderr)?.[1]);
    expect(measured / 2 ** 20).toBeLessThanOrEqual(1.15 * memory);
  }, 300_000);
});
