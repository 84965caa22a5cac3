/**
 * Checkpoints and resume of a tiled render (issue 20), through the job
 * pipeline every front end uses (prepareJob, runJobGroup) on the cpu engine:
 * a render tiled by --tile, stopped after 3 of 6 iterations and resumed from
 * its checkpoint, ends on the image of the same render run straight through,
 * bit for bit (a tiled session's images and Adam moments are host arrays,
 * saved and restored whole, and its tiles run in the same order each time).
 * Untiled, the same job ends within 1e-3 of it (Adam's tolerance: tiled-suite.ts).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { jobFromOptions, prepareJob, runJobGroup, type Engine, type JobEvents } from '@nst/job';
import { createNativeBackend } from '@nst/native';
import { newDir, REDUCED_FLAGS, relL2, writeTestImage } from '@nst/test-helpers';
import { testWeights } from '../../../test/reference/random-weights.js';
import { addon, skipReason } from './helpers.js';

const WEIGHTS = testWeights(7, 16);

describe.skipIf(!addon)(`resuming a tiled render${addon ? '' : ` (${skipReason})`}`, () => {
  it('stopped after 3 of 6 iterations and resumed, it ends where the straight render does', async () => {
    const dir = newDir();
    const content = await writeTestImage(path.join(dir, 'c.png'), 150, 110, 1);
    const style = await writeTestImage(path.join(dir, 's.png'), 90, 120, 2);
    const layers = Object.fromEntries(
      [0, 2].map((i) => [REDUCED_FLAGS[i].slice(2).replace(/-(.)/g, (_, c: string) => c.toUpperCase()), REDUCED_FLAGS[i + 1]]),
    );
    const job = (out: string, tile: string, resume = false) =>
      jobFromOptions({
        content,
        style: [style],
        out: path.join(dir, out),
        size: '150x110',
        iterations: '6',
        tile,
        checkpointEvery: '1',
        resume,
        ...layers,
      });
    const backend = await createNativeBackend('cpu', { precision: 'fp32' });
    try {
      await backend.loadWeights(WEIGHTS);
      const engine: Engine = { backend, weights: WEIGHTS };
      const notices: string[] = [];
      const run = async (config: ReturnType<typeof job>, events: JobEvents = {}, signal?: AbortSignal) => {
        const prepared = await prepareJob(config, WEIGHTS);
        return runJobGroup(engine, [prepared], { onNotice: (line) => notices.push(line), ...events }, signal);
      };

      const straight = await run(job('straight.png', '32'));
      expect(notices.some((l) => /^tiling: 150x110 in \d+ tiles of 32 px/.test(l))).toBe(true);

      const stop = new AbortController();
      const stopped = await run(job('resumed.png', '32'), { onProgress: (i) => i >= 3 && stop.abort() }, stop.signal);
      expect(stopped.interrupted).toBe(true);
      expect(stopped.iterations).toBe(3);
      let resumedAt = -1;
      const resumed = await run(job('resumed.png', '32', true), { onResumed: (i) => (resumedAt = i) });
      expect(resumedAt).toBe(3);
      expect(resumed.startIteration).toBe(3);
      expect(resumed.iterations).toBe(6);
      expect(relL2(resumed.images, straight.images)).toBe(0);

      const untiled = await run(job('untiled.png', 'off'));
      const d = relL2(untiled.images, straight.images);
      console.log(
        `tiled resume: equal to the straight tiled render; untiled against tiled after 6 iterations: image rel L2 ${d.toExponential(2)}`,
      );
      expect(d).toBeGreaterThan(0);
      expect(d).toBeLessThan(1e-3);
    } finally {
      backend.dispose();
    }
  }, 300_000);
});
