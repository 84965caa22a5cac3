/**
 * The memory plan (issue 20) against the peak resident memory measured of
 * real renders: `nst plan --json` predicts, `nst render` (one iteration, the
 * process's VmHWM read as it exits, bench/tiling/peak.mjs) measures, at small
 * sizes, untiled and tile by tile: within 15%. And a render the plan tiles
 * (--tile) says so in one line and writes its picture. The built CLI: e2e.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliBuilt, jsonLines, newDir, nstAsync, writeTestImage } from '@nst/test-helpers';
import { addon } from '../packages/native/test/helpers.js';

const PEAK = path.resolve(import.meta.dirname, '../bench/tiling/peak.mjs');

describe.skipIf(!cliBuilt || !addon)('the memory plan against measured peaks (cpu, random full VGG-19)', () => {
  for (const tile of ['off', '64'] as const)
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
      expect(predicted.tiled?.tiles).toBe(tile === 'off' ? undefined : 20);
      const render = await nstAsync(['render', ...flags, '-n', '1'], undefined, { NODE_OPTIONS: `--import=${PEAK}` });
      expect(render.status, render.stderr).toBe(0);
      if (tile !== 'off') expect(render.stderr + render.stdout).toMatch(/tiling: 320x240 in 20 tiles of 64 px .*exact/);
      const measured = Number(/peak-rss-bytes (\d+)/.exec(render.stderr)?.[1]);
      const error = predicted.peak / measured - 1;
      console.log(
        `plan 320x240 --tile ${tile}: predicted ${(predicted.peak / 2 ** 20).toFixed(0)} MiB, measured ${(measured / 2 ** 20).toFixed(0)} MiB (${(100 * error).toFixed(1)}%)`,
      );
      expect(Math.abs(error)).toBeLessThanOrEqual(0.15);
    }, 300_000);
});
