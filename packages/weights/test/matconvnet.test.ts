import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PREPROCESSING } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { expectSameArray, expectUserError, referenceLayer, tempDir } from './helpers.js';
import { matConvLayer, matFile, type MatValue } from './matfile.js';

const { path: dir, cleanup } = tempDir();
afterAll(() => cleanup());

const convs = [0, 1, 2].map(referenceLayer);
const str = (text: string): MatValue => ({ t: 'char', text });

function convLayer(l: ReturnType<typeof referenceLayer>, biasAsDouble = false): MatValue {
  return matConvLayer(l.name, l.kernel, l.bias, l.I, l.O, {
    biasType: biasAsDouble ? 'double' : 'single',
    extra: [
      ['size', { t: 'double', dims: [1, 4], data: [3, 3, l.I, l.O] }],
      ['pad', { t: 'double', dims: [1, 4], data: [1, 1, 1, 1] }],
      ['stride', { t: 'double', dims: [1, 2], data: [1, 1] }],
    ],
  });
}
function simpleLayer(name: string, type: string): MatValue {
  return {
    t: 'struct',
    fields: [
      ['name', str(name)],
      ['type', str(type)],
      ['weights', { t: 'cell', dims: [0, 0], items: [] }],
    ],
  };
}

/** The layout of imagenet-vgg-verydeep-19.mat: layers (cell of structs), then meta.normalization.averageImage. */
function network(mean = [123.68, 116.779, 103.939], extra: MatValue[] = []): Array<[string, MatValue]> {
  const layers: MatValue[] = [
    convLayer(convs[0]),
    simpleLayer('relu1_1', 'relu'),
    convLayer(convs[1], true),
    simpleLayer('relu1_2', 'relu'),
    simpleLayer('pool1', 'pool'),
    convLayer(convs[2]),
    simpleLayer('relu2_1', 'relu'),
    ...extra,
  ];
  const meta: MatValue = {
    t: 'struct',
    fields: [
      ['inputs', str('input')],
      [
        'normalization',
        {
          t: 'struct',
          fields: [
            ['imageSize', { t: 'double', dims: [1, 4], data: [224, 224, 3, 10] }],
            ['averageImage', { t: 'single', dims: [1, 1, 3], data: mean }],
            ['keepAspect', { t: 'double', dims: [1, 1], data: [1] }],
          ],
        },
      ],
    ],
  };
  return [
    ['layers', { t: 'cell', dims: [1, layers.length], items: layers }],
    ['meta', meta],
  ];
}

describe('MatConvNet .mat', () => {
  for (const compressed of [false, true])
    it(`reads the layers cell and the mean pixel (${compressed ? 'v7, compressed' : 'v6, uncompressed'}), kernels as HWIO`, async () => {
      const path = join(dir, `net-${compressed}.mat`);
      writeFileSync(path, matFile(network(), compressed));
      const set = await loadWeights(path);
      expect(set.format).toBe('matconvnet');
      expect(set.preprocessing).toEqual(PREPROCESSING.caffeRgb);
      expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1']);
      set.layers.forEach((l, k) => {
        expectSameArray(l.kernel, convs[k].kernel, `${l.name} kernel`);
        // conv1_2's bias was written as double: it reads back as the same float32 values.
        expectSameArray(l.bias, convs[k].bias, `${l.name} bias`);
      });
    });

  it('reads all 16 convs of a full-size file and stops at conv5_4 (the next layer is garbage it must not parse)', async () => {
    const all = Array.from({ length: 16 }, (_, i) => referenceLayer(i));
    const layers: MatValue[] = all.flatMap((l) => [convLayer(l), simpleLayer(`relu${l.name.slice(4)}`, 'relu')]);
    layers.push({ t: 'raw', bytes: Buffer.alloc(4096, 0xff) }); // "fc6": not even a valid array
    const [, meta] = network([120, 110, 100]);
    const path = join(dir, 'full.mat');
    writeFileSync(path, matFile([['layers', { t: 'cell', dims: [1, layers.length], items: layers }], meta], false));
    const set = await loadWeights(path);
    expect(set.layers.length).toBe(16);
    expect(set.preprocessing.mean).toEqual([120, 110, 100]); // `meta`, after `layers`, is still found
    for (const k of [0, 9, 15]) {
      expectSameArray(set.layers[k].kernel, all[k].kernel, `${all[k].name} kernel`);
      expectSameArray(set.layers[k].bias, all[k].bias, `${all[k].name} bias`);
    }
  });

  it('records a non-standard mean, and reads an older file with top-level normalization', async () => {
    const path = join(dir, 'mean.mat');
    writeFileSync(path, matFile(network([120, 110, 100]), true));
    const set = await loadWeights(path);
    expect(set.preprocessing.mean).toEqual([120, 110, 100]);
    expect(set.preprocessing.channelOrder).toBe('rgb');
    // Older MatConvNet files: top-level `normalization` with a full average image (H x W x 3).
    const [layers] = network();
    const avg = new Float32Array(4 * 3);
    avg.fill(10, 0, 4);
    avg.fill(20, 4, 8);
    avg.fill(30, 8, 12);
    const old = join(dir, 'old.mat');
    writeFileSync(
      old,
      matFile([layers, ['normalization', { t: 'struct', fields: [['averageImage', { t: 'single', dims: [2, 2, 3], data: avg }]] }]], false),
    );
    expect((await loadWeights(old)).preprocessing.mean).toEqual([10, 20, 30]);
  });

  it('rejects truncated and corrupted files, wrong shapes and v7.3 files with one-line errors', async () => {
    const good = matFile(network(), true);
    const truncated = join(dir, 'truncated.mat');
    writeFileSync(truncated, good.subarray(0, Math.floor(good.length * 0.6)));
    await expectUserError(truncated, /runs past the end of the file/);
    const corrupt = Buffer.from(good);
    for (let i = 300; i < 340; i++) corrupt[i] ^= 0x5a;
    const corruptPath = join(dir, 'corrupt.mat');
    writeFileSync(corruptPath, corrupt);
    await expectUserError(corruptPath, /MatConvNet/);
    const wrong = network();
    (
      ((wrong[0][1] as { items: MatValue[] }).items[0] as { fields: Array<[string, MatValue]> }).fields[2][1] as { items: MatValue[] }
    ).items[0] = { t: 'single', dims: [3, 3, 3, 32], data: new Float32Array(9 * 3 * 32) };
    const wrongPath = join(dir, 'wrong.mat');
    writeFileSync(wrongPath, matFile(wrong, false));
    await expectUserError(wrongPath, /conv1_1 kernel has shape \[3, 3, 3, 32\], VGG-19 needs \[3, 3, 3, 64\]/);
    const v73 = Buffer.from(readFileSync(wrongPath));
    v73.write('MATLAB 7.3 MAT-file', 0, 'latin1');
    const v73Path = join(dir, 'v73.mat');
    writeFileSync(v73Path, v73);
    await expectUserError(v73Path, /v7\.3 files are HDF5/);
  });
});
