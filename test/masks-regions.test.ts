/**
 * Masks end to end (issue 25): two styles under complementary masks (the sky
 * of examples/images/tubingen.jpg and the rest, examples/masks, made by
 * test/example-masks.test.ts), rendered by the native cpu engine with
 * the built-in blocks 1-3 at 128 px wide. Measured in float64 on what the
 * engine was given (test/reference: the forward pass and the guided Gram):
 * under the sky mask the output's Gram is nearer the first style's than the
 * second's, and under the rest the other way round.
 *
 * Skipped (saying why) only while the cpu engine does not implement masks
 * (Backend.supportsMasks): the engines implement them on another branch;
 * run this once it is merged.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findLayer, formatLayers, VGG19_LAYERS, type Backend } from '@nst/core';
import { jobFromOptions, loadScaleInputs, prepareJob, runJobGroup } from '@nst/job';
import { createNativeBackend, loadNativeAddon } from '@nst/native';
import { EMBEDDED_SOURCE, loadWeights } from '@nst/weights';
import { available, newDir, repoRoot, skip } from '@nst/test-helpers';
import { guidedGram, maskAtLayers } from './reference/masked-float64.js';
import { forward, gram, tensor3 } from './reference/vgg-float64.js';

const examples = path.join(repoRoot, 'examples');
const native = available(loadNativeAddon().ok, 'the native addon is not built: the masked render needs the cpu engine');

/** ||a - b||_F / ||b||_F. */
function relativeDistance(a: Float64Array, b: Float64Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
}

describe.runIf(native)('spatial control: a style in each region', () => {
  let backend: Backend | undefined;
  afterAll(() => backend?.dispose());

  it('two styles under complementary masks: the sky takes the first, the rest the second', async (ctx) => {
    backend = await createNativeBackend('cpu');
    if (!backend.supportsMasks)
      skip(ctx, 'the cpu engine does not implement masks yet (Backend.supportsMasks): run after the engines branch merges');
    const weights = await loadWeights(EMBEDDED_SOURCE);
    const layers = weights.defaultLayers!;
    const dir = newDir('nst-regions-');
    const job = jobFromOptions({
      content: path.join(examples, 'images/tubingen.jpg'),
      style: [path.join(examples, 'images/starry_night.jpg'), path.join(examples, 'images/the_scream.jpg')],
      styleMask: [path.join(examples, 'masks/tubingen-sky.png'), path.join(examples, 'masks/tubingen-rest.png')],
      out: path.join(dir, 'regions.png'),
      size: '128',
      iterations: '80',
      printEvery: '80',
      styleLayers: formatLayers(layers.styleLayers),
      contentLayers: formatLayers(layers.contentLayers),
    });
    await backend.loadWeights(weights);
    const prepared = await prepareJob(job, weights);
    const started = Date.now();
    const result = await runJobGroup({ backend, weights }, [prepared]);
    expect(Date.now() - started).toBeLessThan(60_000);
    const step = prepared.steps.at(-1)!;
    const { width, height } = step.size;
    expect([width, height]).toEqual([128, 96]);

    // What the engine was given: the styles and masks at the output size, network space.
    const { targets } = await loadScaleInputs(job, step, weights.preprocessing);
    const styleIndices = layers.styleLayers.map((l) => VGG19_LAYERS.indexOf(findLayer(l.layer)!));
    const last = Math.max(...styleIndices);
    const output = forward(weights, job.pooling, tensor3(height, width, 3, result.images), last);
    const styles = targets.styles.map((s) => forward(weights, job.pooling, tensor3(s.image.height, s.image.width, 3, s.image.data), last));
    const masks = targets.styles.map((s) => maskAtLayers(Float64Array.from(s.mask!), height, width, last));
    // Distance of the output under mask r to style s: the style layers' relative Frobenius distances, weighted.
    const distance = (r: number, s: number) =>
      layers.styleLayers.reduce((sum, l, k) => {
        const i = styleIndices[k];
        return sum + l.weight * relativeDistance(guidedGram(output[i].activation, masks[r][i])!, gram(styles[s][i].activation));
      }, 0);
    const d = [0, 1].map((r) => [0, 1].map((s) => distance(r, s)));
    console.log(`relative Gram distances (rows: sky, rest; columns: starry night, the scream): ${JSON.stringify(d)}`);
    // The crossing: each region nearer its own style.
    expect(d[0][0]).toBeLessThan(d[0][1]);
    expect(d[1][1]).toBeLessThan(d[1][0]);
  });
});
