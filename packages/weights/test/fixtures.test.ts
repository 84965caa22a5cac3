/**
 * The fixtures in test/fixtures were written by the real libraries (h5py for
 * Keras' layouts, torch.save and a hand-built archive that torch.load reads
 * back for the three PyTorch formats); each script read every file back with
 * that library and recorded, per layer, the SHA-256 of the float32 values it
 * read (kernels in HWIO order). nst must read exactly those values.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PREPROCESSING, VGG19_LAYERS } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { repoRoot } from '@nst/test-helpers';

const dir = join(repoRoot, 'test', 'fixtures');

interface LayerRecord {
  kernel_shape: number[];
  kernel_sha256: string;
  bias_sha256: string;
  kernel_first: number[];
  bias_first: number[];
}
interface Expected {
  writer: string;
  files: Record<string, { bytes: number; sha256: string; layers: Record<string, LayerRecord> }>;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const floatBytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

for (const [record, format, preprocessing] of [
  ['keras-h5.expected.json', 'keras-h5', PREPROCESSING.caffeBgr],
  // Random values of unknown origin: the .pth reader assumes torchvision's preprocessing.
  ['pth.expected.json', 'pth', PREPROCESSING.torchvision],
] as const) {
  const expected = JSON.parse(readFileSync(join(dir, record), 'utf8')) as Expected;
  describe(`${record}: nst reads what ${expected.writer} wrote, value for value`, () => {
    for (const [name, file] of Object.entries(expected.files))
      it(name, async () => {
        const path = join(dir, name);
        // The file is the one the script described (not edited since).
        expect(sha256(readFileSync(path))).toBe(file.sha256);
        const set = await loadWeights(path);
        expect(set.format).toBe(format);
        expect(set.preprocessing).toEqual(preprocessing);
        expect(set.layers.map((l) => l.name)).toEqual(Object.keys(file.layers));
        for (const layer of set.layers) {
          const want = file.layers[layer.name];
          expect(sha256(floatBytes(layer.kernel)), `${name} ${layer.name} kernel`).toBe(want.kernel_sha256);
          expect(sha256(floatBytes(layer.bias)), `${name} ${layer.name} bias`).toBe(want.bias_sha256);
          // The first values, readable when a hash differs.
          expect([...layer.kernel.subarray(0, 3)]).toEqual(want.kernel_first);
          expect([...layer.bias.subarray(0, 3)]).toEqual(want.bias_first);
        }
      });
  });
}

describe('the Keras 1 release layout', () => {
  it('holds all 16 convolutions, and nst reads all 16', async () => {
    const expected = JSON.parse(readFileSync(join(dir, 'keras-h5.expected.json'), 'utf8')) as Expected;
    const layers = Object.keys(expected.files['keras1-vgg19-notop.h5.fixture'].layers);
    expect(layers).toEqual(VGG19_LAYERS.map((l) => l.name));
    const set = await loadWeights(join(dir, 'keras1-vgg19-notop.h5.fixture'));
    expect(set.layers.length).toBe(16);
  });
});
