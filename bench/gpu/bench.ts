/**
 * Time per iteration of the native cuda backend: VGG-19 to conv5_1 (random
 * weights: the cost does not depend on their values), the default loss, Adam.
 * Bundled by bundle.mjs and run by run.sh on the GPU machine:
 *   node bench.mjs --size 512 --batch 1 --steps 300 [--precision tf32]
 * Prints one JSON line. With NST_CUDA_VERBOSE=1 the engine also reports the
 * bytes its session allocated (stderr).
 */
import { DEFAULT_ADAM, DEFAULT_LOSS, adamStepSizes } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { testImage, testWeights } from '../../test/reference/random-weights.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const size = Number(arg('size', '512'));
const batch = Number(arg('batch', '1'));
const steps = Number(arg('steps', '300'));
const warmup = Number(arg('warmup', '10'));
const precision = arg('precision', 'tf32') as 'fp32' | 'tf32';

const t0 = performance.now();
const backend = await createNativeBackend('cuda', { precision });
await backend.loadWeights(testWeights(1, 13));
const session = await backend.createSession({ height: size, width: size, batch, pooling: 'avg', loss: DEFAULT_LOSS });
const n = size * size * 3;
await session.setTargets(
  Array.from({ length: batch }, (_, k) => ({
    content: { height: size, width: size, data: testImage(10 + k, n) },
    styles: [{ image: { height: size, width: size, data: testImage(20 + k, n) }, weight: 1 }],
  })),
);
await session.setImages(testImage(30, batch * n, -20, 20));
const setup = performance.now() - t0;

// Warm-up: the first update runs eagerly, the second is captured into the graph.
const allSteps = adamStepSizes(DEFAULT_ADAM, 1, warmup + steps);
const start = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: allSteps.subarray(0, warmup) });
const t1 = performance.now();
const mid = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: allSteps.subarray(warmup) });
const elapsed = performance.now() - t1;
const end = await session.iterate({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(0) });
backend.dispose();

console.log(
  JSON.stringify({
    impl: 'nst-cuda',
    detail: backend.detail,
    size,
    batch,
    precision,
    steps,
    ms_per_iter: elapsed / steps,
    images_per_s: (batch * steps * 1000) / elapsed,
    setup_s: setup / 1000,
    loss_start: start[0].total,
    loss_after_warmup: mid[0].total,
    loss_end: end[0].total,
  }),
);
