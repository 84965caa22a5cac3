import { writeFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import h5wasm from 'h5wasm/node';
import { PREPROCESSING, isUserError } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { expectSameArray, expectUserError, referenceLayer, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
beforeAll(async () => {
  await h5wasm.ready;
  ({ path: dir, cleanup } = tempDir());
});
afterAll(() => cleanup());

const layers = [0, 1, 2, 3].map(referenceLayer);
const kerasName = (name: string) => name.replace(/^conv(\d)_(\d)$/, 'block$1_conv$2');

/**
 * Writes the layout of Keras' save_weights (and, with `fullModel`, model.save's
 * /model_weights): root attribute layer_names, one group per layer with
 * attribute weight_names, datasets at <layer>/<layer>/kernel:0 and bias:0.
 * Non-conv layers (input, pooling: no weights; fc1: a dense kernel) are included.
 */
function writeKeras(path: string, opts: { fullModel?: boolean; top?: boolean; dtype?: '<f' | '<d' } = {}): void {
  const f = new h5wasm.File(path, 'w');
  const root = opts.fullModel ? f.create_group('model_weights') : f;
  const names = [
    'input_1',
    ...layers.slice(0, 2).map((l) => kerasName(l.name)),
    'block1_pool',
    ...layers.slice(2).map((l) => kerasName(l.name)),
  ];
  if (opts.top) names.push('flatten', 'fc1');
  root.create_attribute('layer_names', names, null, 'S16');
  root.create_attribute('backend', 'tensorflow');
  root.create_attribute('keras_version', '2.1.4');
  for (const n of names) {
    const g = root.create_group(n);
    const l = layers.find((x) => kerasName(x.name) === n);
    if (l) {
      g.create_attribute('weight_names', [`${n}/kernel:0`, `${n}/bias:0`], null, 'S32');
      const inner = g.create_group(n);
      inner.create_dataset({ name: 'kernel:0', data: l.kernel, shape: [3, 3, l.I, l.O], dtype: opts.dtype ?? '<f' });
      inner.create_dataset({ name: 'bias:0', data: l.bias, shape: [l.O], dtype: opts.dtype ?? '<f' });
    } else if (n === 'fc1') {
      g.create_attribute('weight_names', ['fc1/kernel:0', 'fc1/bias:0'], null, 'S32');
      const inner = g.create_group(n);
      inner.create_dataset({ name: 'kernel:0', data: new Float32Array(40), shape: [10, 4], dtype: '<f' });
      inner.create_dataset({ name: 'bias:0', data: new Float32Array(4), shape: [4], dtype: '<f' });
    } else {
      g.create_attribute('weight_names', [''], null, 'S1');
    }
  }
  f.close();
}

describe('Keras HDF5', () => {
  for (const [what, opts] of [
    ['notop (save_weights)', {}],
    ['with top', { top: true }],
    ['a full model (model.save, /model_weights)', { fullModel: true, top: true }],
    ['float64 datasets', { dtype: '<d' }],
  ] as const)
    it(`reads ${what} with every value`, async () => {
      const path = join(dir, `keras-${what.replace(/\W+/g, '_')}.h5`);
      writeKeras(path, opts);
      const set = await loadWeights(path);
      expect(set.format).toBe('keras-h5');
      expect(set.preprocessing).toEqual(PREPROCESSING.caffeBgr);
      expect(set.sha256).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
      expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2']);
      set.layers.forEach((l, i) => {
        expectSameArray(l.kernel, layers[i].kernel, `${l.name} kernel`);
        expectSameArray(l.bias, layers[i].bias, `${l.name} bias`);
      });
    });

  /** A file whose block1_conv1 group lists `weightNames` and holds `datasets` (name -> values). */
  function withWeightNames(path: string, weightNames: string[], datasets: Array<[string, Float32Array, number[]]>): string {
    const f = new h5wasm.File(path, 'w');
    f.create_attribute('layer_names', ['block1_conv1'], null, 'S16');
    const g = f.create_group('block1_conv1');
    g.create_attribute('weight_names', weightNames, null, 'S32');
    for (const [name, data, shape] of datasets) g.create_dataset({ name, data, shape, dtype: '<f' });
    f.close();
    return path;
  }

  it('takes kernel and bias from weight_names, in order, whatever the datasets are called', async () => {
    const l = layers[0];
    // The listed datasets have names no pattern knows; decoys with Keras names hold other values.
    const path = withWeightNames(
      join(dir, 'listed.h5'),
      ['first:0', 'second:0'],
      [
        ['first:0', l.kernel, [3, 3, 3, 64]],
        ['second:0', l.bias, [64]],
        ['block1_conv1_W_1:0', new Float32Array(1728).fill(7), [3, 3, 3, 64]],
        ['kernel:0', new Float32Array(1728).fill(8), [3, 3, 3, 64]],
      ],
    );
    const set = await loadWeights(path);
    expectSameArray(set.layers[0].kernel, l.kernel, 'conv1_1 kernel');
    expectSameArray(set.layers[0].bias, l.bias, 'conv1_1 bias');
  });

  it('names the attribute or dataset at fault when weight_names does not describe a convolution', async () => {
    const l = layers[0];
    const three = withWeightNames(join(dir, 'three.h5'), ['a:0', 'b:0', 'c:0'], [['a:0', l.kernel, [3, 3, 3, 64]]]);
    await expectUserError(three, /\/block1_conv1 lists 3 weights \(a:0, b:0, c:0\); a convolution has a kernel and a bias/);
    const missing = withWeightNames(join(dir, 'missing.h5'), ['a:0', 'b:0'], [['a:0', l.kernel, [3, 3, 3, 64]]]);
    await expectUserError(missing, /\/block1_conv1\/b:0 \(the conv1_1 bias\) is missing/);
    const swapped = withWeightNames(
      join(dir, 'swapped.h5'),
      ['b:0', 'a:0'],
      [
        ['a:0', l.kernel, [3, 3, 3, 64]],
        ['b:0', l.bias, [64]],
      ],
    );
    await expectUserError(swapped, /conv1_1 kernel has shape \[64\], VGG-19 needs \[3, 3, 3, 64\]/);
  });

  it('rejects a wrong-shape kernel, a non-HDF5 file named .h5, and a truncated file', async () => {
    const path = join(dir, 'wrong.h5');
    const f = new h5wasm.File(path, 'w');
    const g = f.create_group('block1_conv1').create_group('block1_conv1');
    g.create_dataset({ name: 'kernel:0', data: new Float32Array(9 * 3 * 32), shape: [3, 3, 3, 32], dtype: '<f' });
    g.create_dataset({ name: 'bias:0', data: new Float32Array(64), shape: [64], dtype: '<f' });
    f.close();
    const cases: Array<[string, RegExp]> = [[path, /conv1_1 kernel has shape \[3, 3, 3, 32\], VGG-19 needs \[3, 3, 3, 64\]/]];
    const fake = join(dir, 'fake.h5');
    writeFileSync(fake, Buffer.from('this is not HDF5 at all, just text'));
    cases.push([fake, /not a recognised VGG-19 weight file/]);
    const good = join(dir, 'good.h5');
    writeKeras(good);
    const truncated = join(dir, 'truncated.h5');
    writeFileSync(truncated, readFileSync(good).subarray(0, 3000));
    cases.push([truncated, /Keras HDF5/]);
    for (const [file, message] of cases) {
      const err = await loadWeights(file).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isUserError(err), String(err)).toBe(true);
      expect((err as Error).message.startsWith(file)).toBe(true);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });
});
