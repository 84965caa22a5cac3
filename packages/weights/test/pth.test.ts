import { writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PREPROCESSING } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { expectSameArray, expectUserError, hwio, referenceLayer, tempDir } from './helpers.js';
import { legacyPth, makeZip, zipPth, type TorchTensor } from './torchfile.js';

const { path: dir, cleanup } = tempDir();
afterAll(() => cleanup());

const layers = [0, 1, 2].map(referenceLayer);
const FEATURE = [0, 2, 5]; // torchvision features index of conv1_1, conv1_2, conv2_1

/** OIHW contiguous copy of an HWIO reference kernel (what torchvision stores). */
function oihw(l: ReturnType<typeof referenceLayer>): Float32Array {
  const out = new Float32Array(l.kernel.length);
  for (let o = 0; o < l.O; o++)
    for (let i = 0; i < l.I; i++)
      for (let h = 0; h < 3; h++) for (let w = 0; w < 3; w++) out[((o * l.I + i) * 3 + h) * 3 + w] = l.kernel[hwio(h, w, i, o, l.I, l.O)];
  return out;
}

/**
 * conv1_1 and conv2_1: contiguous OIHW tensors with their own storages.
 * conv1_2: a non-contiguous view (the HWIO buffer seen as OIHW through strides)
 * whose bias shares that storage at an offset, to exercise strides and offsets.
 */
function tensors(ls = layers): TorchTensor[] {
  const out: TorchTensor[] = [];
  ls.forEach((l, k) => {
    const key = `features.${FEATURE[k]}`;
    if (k === 1) {
      const shared = new Float32Array(5 + l.kernel.length + l.O);
      shared.set(l.kernel, 5);
      shared.set(l.bias, 5 + l.kernel.length);
      out.push({
        key: `${key}.weight`,
        storageKey: `${k}s`,
        data: shared,
        offset: 5,
        size: [l.O, l.I, 3, 3],
        stride: [1, l.O, 3 * l.I * l.O, l.I * l.O],
      });
      out.push({ key: `${key}.bias`, storageKey: `${k}s`, data: shared, offset: 5 + l.kernel.length, size: [l.O], stride: [1] });
    } else {
      out.push({ key: `${key}.weight`, storageKey: `${k}w`, data: oihw(l), offset: 0, size: [l.O, l.I, 3, 3], stride: [9 * l.I, 9, 3, 1] });
      out.push({ key: `${key}.bias`, storageKey: `${k}b`, data: l.bias, offset: 0, size: [l.O], stride: [1] });
    }
  });
  // A classifier tensor the loader must skip.
  out.push({ key: 'classifier.0.weight', storageKey: 'cls', data: new Float32Array(12), offset: 0, size: [3, 4], stride: [4, 1] });
  return out;
}

async function expectReference(path: string) {
  const set = await loadWeights(path);
  expect(set.format).toBe('pth');
  expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1']);
  set.layers.forEach((l, k) => {
    expectSameArray(l.kernel, layers[k].kernel, `${l.name} kernel`);
    expectSameArray(l.bias, layers[k].bias, `${l.name} bias`);
  });
  return set;
}

describe('PyTorch .pth', () => {
  it('reads the zip format (stored entries) with strides, offsets and shared storages', async () => {
    const path = join(dir, 'model.pth');
    writeFileSync(path, zipPth(tensors()));
    const set = await expectReference(path);
    expect(set.sha256).toBe(createHash('sha256').update(zipPth(tensors())).digest('hex'));
    // Unknown origin (hash, name, conv1_1 statistics all unknown): torchvision's normalisation.
    expect(set.preprocessing).toEqual(PREPROCESSING.torchvision);
  });

  it('never reads the classifier: a zip whose classifier storage is missing still loads', async () => {
    const path = join(dir, 'no-classifier.pth');
    writeFileSync(path, zipPth(tensors(), { omitStorages: ['cls'] }));
    await expectReference(path);
  });

  it('reads deflated zip entries and another archive folder name', async () => {
    const path = join(dir, 'deflated.pth');
    writeFileSync(path, zipPth(tensors(), { deflate: true, prefix: 'vgg19' }));
    await expectReference(path);
  });

  it('reads the legacy (pre-1.6) stream format', async () => {
    const path = join(dir, 'legacy.pth');
    writeFileSync(path, legacyPth(tensors()));
    await expectReference(path);
  });

  it('records Caffe preprocessing for the neural-style-pt file name and for the Caffe conv1_1 fingerprint', async () => {
    const named = join(dir, 'vgg19-d01eb7cb.pth');
    writeFileSync(named, zipPth(tensors()));
    expect((await loadWeights(named)).preprocessing).toEqual(PREPROCESSING.caffeBgr);
    // A conv1_1 scaled to the Caffe VGG-19's kernel norm (7.955915) and bias sum (29.940525).
    const l0 = referenceLayer(0);
    const norm = Math.sqrt(l0.kernel.reduce((a, v) => a + v * v, 0));
    const kernel = Float32Array.from(l0.kernel, (v) => (v * 7.955915) / norm);
    const bias = Float32Array.from(l0.bias, () => 29.940525 / 64);
    const caffe = join(dir, 'renamed.pth');
    writeFileSync(caffe, zipPth(tensors([{ ...l0, kernel, bias }])));
    const set = await loadWeights(caffe);
    expect(set.preprocessing).toEqual(PREPROCESSING.caffeBgr);
  });

  it('refuses any global a state dict does not need, without running anything', async () => {
    const evil = join(dir, 'evil.pth');
    writeFileSync(evil, zipPth(tensors(), { extraGlobal: ['os', 'system'] }));
    await expectUserError(evil, /refers to os\.system, which a state dict of tensors does not need; refusing/);
    const model = join(dir, 'model-pickle.pth');
    writeFileSync(model, zipPth(tensors(), { extraGlobal: ['torch.nn.modules.container', 'Sequential'] }));
    await expectUserError(model, /save model\.state_dict\(\) instead/);
  });

  it('rejects a corrupted storage (CRC), a truncated file, a zip without data.pkl, and a wrong-shape tensor', async () => {
    const good = zipPth(tensors());
    const corrupt = Buffer.from(good);
    corrupt[good.indexOf(Buffer.from('archive/data/0w')) + 200] ^= 0x10; // inside the first storage's data
    const corruptPath = join(dir, 'corrupt.pth');
    writeFileSync(corruptPath, corrupt);
    await expectUserError(corruptPath, /CRC-32/);
    const truncated = join(dir, 'truncated.pth');
    writeFileSync(truncated, good.subarray(0, good.length - 100));
    await expectUserError(truncated, /end-of-central-directory|beyond the end|bad signature/);
    const notTorch = join(dir, 'plain.zip');
    writeFileSync(notTorch, makeZip([['readme.txt', Buffer.from('hello')]], false));
    await expectUserError(notTorch, /no data\.pkl/);
    const wrong = tensors();
    wrong[0] = { ...wrong[0], size: [64, 3, 3, 2] };
    const wrongPath = join(dir, 'wrong.pth');
    writeFileSync(wrongPath, zipPth(wrong));
    await expectUserError(wrongPath, /conv1_1 kernel has shape \[64, 3, 3, 2\], VGG-19 needs \[64, 3, 3, 3\]/);
  });
});
