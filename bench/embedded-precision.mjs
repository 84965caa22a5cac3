#!/usr/bin/env node
// Does storing the embedded VGG-19 blocks 1-3 as float16 change a render?
// Renders the example (tubingen in the style of starry_night, 400x300, 200
// Adam iterations, the embedded set's layers) on the native cpu engine with
// the float32 weights and with the same weights rounded to float16, and
// prints the relative L2 difference of the final float images and of the
// 8-bit outputs, then that of a second float32 run (the engine's own spread).
// The project stores float16 only below 1e-3. Measured (2-core machine,
// oneDNN 2.6.3): float16 2.6e-2 (float images) and 1.3e-2 (8-bit outputs),
// against exactly 0 between two float32 runs, so the embedded set is float32.
//   node bench/embedded-precision.mjs [shared-weights-folder] [iterations]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adamStepSizes, toPixels } from '@nst/core';
import { createNativeBackend } from '@nst/native';
import { prepareRender, RENDER_DEFAULTS } from '@nst/job';
import { loadWeights, roundToHalf } from '@nst/weights';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = process.argv[2] ?? path.resolve(root, '..', 'shared', 'weights', 'vgg19-keras-blocks1-3');
const iterations = Number(process.argv[3] ?? 200);
const images = path.join(root, 'examples', 'images');

const f32 = await loadWeights(source);
const f16 = { ...f32, layers: f32.layers.map((l) => ({ ...l, kernel: roundToHalf(l.kernel), bias: roundToHalf(l.bias) })) };
console.log(
  `weights: ${source}; float16 rounding of the kernels: rel L2 ${relL2(
    f16.layers.flatMap((l) => [...l.kernel]),
    f32.layers.flatMap((l) => [...l.kernel]),
  ).toExponential(2)}`,
);

const config = {
  ...RENDER_DEFAULTS,
  contents: [path.join(images, 'tubingen.jpg')],
  styles: [path.join(images, 'starry_night.jpg')],
  out: '/tmp/unused.png',
  size: { kind: 'exact', width: 400, height: 300 },
  iterations,
  loss: {
    ...RENDER_DEFAULTS.loss,
    contentLayers: [{ layer: 'conv3_2', weight: 1 }],
    styleLayers: ['conv1_1', 'conv2_1', 'conv3_1'].map((layer) => ({ layer, weight: 1 / 3 })),
  },
};

async function render(weights) {
  const backend = await createNativeBackend('cpu');
  await backend.loadWeights(weights);
  const plan = await prepareRender(config, weights);
  const session = await backend.createSession(plan.session);
  await session.setTargets(plan.targets);
  await session.setImages(plan.initialImages);
  const t = performance.now();
  const losses = await session.iterate({ adam: plan.adam, stepSizes: adamStepSizes(plan.adam, 1, iterations) });
  const final = await session.iterate({ adam: plan.adam, stepSizes: new Float32Array(0) });
  const image = await session.readImages();
  session.dispose();
  backend.dispose();
  console.log(
    `  ${backend.detail}: J ${losses[0].total.toExponential(3)} -> ${final[0].total.toExponential(3)} in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
  return { image, pixels: toPixels({ height: 300, width: 400, data: image }, plan.preprocessing) };
}

function relL2(a, b) {
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const a = await render(f32);
const b = await render(f16);
console.log(
  `float16 vs float32 weights after ${iterations} iterations: float image rel L2 ${relL2(b.image, a.image).toExponential(3)}, 8-bit output rel L2 ${relL2(b.pixels.data, a.pixels.data).toExponential(3)}`,
);
// The engine's own run-to-run spread, so that the difference above is not mistaken for noise.
const c = await render(f32);
console.log(
  `float32 run again: float image rel L2 ${relL2(c.image, a.image).toExponential(3)}, 8-bit output rel L2 ${relL2(c.pixels.data, a.pixels.data).toExponential(3)}`,
);
