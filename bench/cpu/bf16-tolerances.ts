/**
 * The measurements behind the bf16 tolerances of packages/native/test/cpu-bf16.test.ts:
 * the cpu engine in bf16 against the float64 reference (test/reference) on
 * the parity tests' cases, for several random weight sets and images (the
 * tests run one). Prints one line per case and the worst of each measure.
 *
 *   npm run build && node bench/cpu/bf16-tolerances.mjs
 *
 * Without native bf16 it forces NST_CPU_FEATURES=avx512_bf16 (oneDNN then
 * runs its emulated or reference bf16 kernels: slower, same roundings).
 */
import { relDiff, relL2 } from '@nst/core';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { referenceLossAndGradient } from '../../test/reference/vgg-float64.js';
import { testImage, testWeights } from '../../test/reference/random-weights.js';
import { adamCase, PARITY_SIZE, parityCases, runAdamCase, testPicture } from '../../test/reference/parity-cases.js';

const { height: h, width: w } = PARITY_SIZE;
const _image = testPicture;

const loaded = loadNativeAddon();
if (!loaded.ok) throw new Error(loaded.reason);
try {
  loaded.addon.createEngine('cpu', { precision: 'bf16' }).dispose();
} catch {
  process.env.NST_CPU_FEATURES = 'avx512_bf16';
  console.log('no native bf16 here: NST_CPU_FEATURES=avx512_bf16 (emulated bf16 kernels)');
}
const worst = new Map<string, number>();
const note = (key: string, value: number) => worst.set(key, Math.max(worst.get(key) ?? 0, value));

for (const seed of [5, 6, 7, 8]) {
  const weights = testWeights(seed, 13);
  for (const [k, c] of parityCases(seed * 100).entries()) {
    const backend = await createNativeBackend('cpu', { precision: 'bf16' });
    await backend.loadWeights(weights);
    const images = testImage(30 + seed, c.options.batch * h * w * 3);
    const session = await backend.createSession(c.options);
    await session.setTargets(c.targets);
    await session.setImages(images);
    const got = await session.lossAndGradient();
    const want = referenceLossAndGradient(weights, c.options, c.targets, images);
    const loss = Math.max(
      ...got.losses.flatMap((g, b) => (['content', 'style', 'total'] as const).map((key) => relDiff(g[key], want.losses[b][key]))),
    );
    const tv = Math.max(...got.losses.map((g, b) => relDiff(g.tv, want.losses[b].tv)));
    const grad = relL2(got.gradient, want.gradient);
    const pooling = k === 0 ? 'avg' : 'max';
    note(`${pooling}: losses`, loss);
    note(`${pooling}: tv`, tv);
    note(`${pooling}: gradient`, grad);
    console.log(
      `weights ${seed}, ${c.name}: losses ${loss.toExponential(2)} (tv ${tv.toExponential(1)}), gradient rel. L2 ${grad.toExponential(2)}`,
    );
    backend.dispose();
  }
  const backend = await createNativeBackend('cpu', { precision: 'bf16' });
  await backend.loadWeights(weights);
  const { first, images, after, ref } = await runAdamCase(backend, weights, adamCase(41 + seed));
  backend.dispose();
  let maxDiff = 0;
  for (let i = 0; i < images.length; i++) maxDiff = Math.max(maxDiff, Math.abs(images[i] - ref.images[i]));
  const [d0, d20, di] = [
    relDiff(first[0].total, ref.first[0].total),
    relDiff(after[0].total, ref.final[0].total),
    relL2(images, ref.images),
  ];
  note('adam: loss at 0', d0);
  note('adam: loss at 20', d20);
  note('adam: image rel. L2', di);
  note('adam: image max |diff| (levels)', maxDiff);
  console.log(
    `weights ${seed}, 20 Adam steps at 12x14: loss at 0 ${d0.toExponential(2)}, at 20 ${d20.toExponential(2)} ` +
      `(fell to ${(after[0].total / first[0].total).toFixed(3)} of the start, float64 ${(ref.final[0].total / ref.first[0].total).toFixed(3)}), ` +
      `image rel. L2 ${di.toExponential(2)}, max |diff| ${maxDiff.toFixed(2)} levels`,
  );
}
console.log('worst over the weight sets:');
for (const [key, value] of worst) console.log(`  ${key}: ${value.toExponential(2)}`);
