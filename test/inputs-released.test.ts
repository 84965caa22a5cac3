/**
 * A render keeps no copy of its inputs once its session holds its own: the
 * content, initial and style images loaded for a scale are unreachable from
 * the first iteration on (a full garbage collection frees them), tiled or
 * not. At 8192x8192 the content and initial images stayed reachable through
 * the whole loop (a suspended async function's locals), 1.5 GiB beside what
 * the memory plan counts (bench/RESULTS.md).
 */
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '@nst/core';
import { jobFromOptions, prepareJob, runJobGroup } from '@nst/job';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { newDir, writeTestImage } from '@nst/test-helpers';
import { testWeights } from './reference/random-weights.js';

v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

const native = loadNativeAddon();

describe.skipIf(!native.ok && process.env.CI !== 'true')('the inputs of a render, once its session has them', () => {
  const weights = testWeights(3, 4);
  let backend: Backend;
  beforeAll(async () => {
    backend = await createNativeBackend('cpu');
    await backend.loadWeights(weights);
  });
  afterAll(() => backend?.dispose());

  for (const tile of ['off', '16']) {
    it(`are freed by a garbage collection from the first iteration on (--tile ${tile})`, async () => {
      const dir = newDir('nst-inputs-released-');
      const content = await writeTestImage(path.join(dir, 'content.png'), 64, 48, 1);
      const style = await writeTestImage(path.join(dir, 'style.png'), 64, 48, 5);
      const job = jobFromOptions({
        content,
        style,
        out: path.join(dir, 'out.png'),
        size: '48x36',
        iterations: '3',
        styleLayers: 'conv1_1,conv2_1',
        contentLayers: 'conv2_2',
        printEvery: '1',
        saveEvery: '0',
        tile,
      });
      const prepared = await prepareJob(job, weights);
      const inputs: { name: string; ref: WeakRef<object> }[] = [];
      let contentTargets = '';
      const alivePerIteration: string[][] = [];
      await runJobGroup(
        { backend, weights },
        [
          {
            ...prepared,
            // The inputs as loaded: weak references only.
            adjustInputs: (loaded) => {
              inputs.push({ name: 'initial image', ref: new WeakRef(loaded.initial) });
              inputs.push({ name: 'content image', ref: new WeakRef(loaded.targets.content.data) });
              loaded.targets.styles.forEach((s, k) => inputs.push({ name: `style image ${k + 1}`, ref: new WeakRef(s.image.data) }));
              return loaded;
            },
          },
        ],
        {
          onNotice: (line) => {
            if (line.startsWith('tiling:')) contentTargets = /content targets (kept|recomputed)/.exec(line)?.[1] ?? '?';
          },
          onProgress: () => {
            collectGarbage();
            alivePerIteration.push(inputs.filter((i) => i.ref.deref() !== undefined).map((i) => i.name));
          },
        },
      );
      expect(inputs.map((i) => i.name)).toEqual(['initial image', 'content image', 'style image 1']);
      // Tiled, the content targets are kept (not the content image, as 'recomputed' would).
      expect(contentTargets).toBe(tile === 'off' ? '' : 'kept');
      expect(alivePerIteration.length).toBeGreaterThanOrEqual(3);
      for (const alive of alivePerIteration) expect(alive).toEqual([]);
    });
  }
});
