/**
 * The weight set shipped in the package (assets/), and what it rests on:
 * float16 conversion (against the exact half values), F16 safetensors
 * writing, the SHA-256 check, and the default-layer metadata.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isUserError, PREPROCESSING, type UserError } from '@nst/core';
import {
  EMBEDDED_SHA256,
  EMBEDDED_SOURCE,
  embeddedWeightsPath,
  floatToHalf,
  halfToFloat,
  loadWeights,
  loadWeightsDetailed,
  parseDefaultLayers,
  readSafetensors,
  roundToHalf,
  sha256File,
  verifySha256,
  writeSafetensors,
} from '@nst/weights';
import { expectSameArray, haveShared, newDir, sharedWeights } from './helpers.js';

describe('float16', () => {
  it('floatToHalf inverts halfToFloat on every half value (NaNs aside)', () => {
    let checked = 0;
    for (let h = 0; h < 0x10000; h++) {
      const x = halfToFloat(h);
      if (Number.isNaN(x)) continue;
      expect(floatToHalf(x)).toBe(h);
      checked++;
    }
    expect(checked).toBe(0x10000 - 2 * 1023);
  });

  it('rounds to the nearest half value, ties to even, and overflows to infinity', () => {
    // Every float between two neighbouring halves goes to the nearer one.
    for (let i = 0; i < 20000; i++) {
      const x = ((Math.sin(i * 12.9898) * 43758.5453) % 1) * 2 ** ((i % 40) - 24);
      const h = floatToHalf(x);
      const err = Math.abs(halfToFloat(h) - Math.fround(x));
      for (const n of [h - 1, h + 1])
        if ((n & 0x7fff) < 0x7c00 && (n ^ h) >>> 15 === 0) expect(err).toBeLessThanOrEqual(Math.abs(halfToFloat(n) - Math.fround(x)));
    }
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie between 1 and 1 + 2^-10: to the even 1
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // a tie between 0x3c01 and 0x3c02: to the even one
    expect(floatToHalf(2 ** -25)).toBe(0); // half the smallest subnormal: a tie, to the even 0
    expect(floatToHalf(3 * 2 ** -25)).toBe(2); // between subnormals 1 and 2: to the even 2
    expect(floatToHalf(65520)).toBe(0x7c00); // half-way past the largest finite half
    expect(floatToHalf(-65504)).toBe(0xfbff);
  });

  it('safetensors F16 tensors read back as the rounded values; out-of-range values are refused', async () => {
    const dir = newDir();
    const data = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3.7);
    const file = join(dir, 'half.safetensors');
    await writeSafetensors(
      file,
      [
        { name: 'x', shape: [10, 100], data, dtype: 'F16' },
        { name: 'y', shape: [2], data: new Float32Array([1.1, 2.2]) },
      ],
      {},
    );
    const st = await readSafetensors(file);
    expect(st.tensors.get('x')!.dtype).toBe('F16');
    expect(st.tensors.get('x')!.bytes.byteLength).toBe(2000);
    expect(st.tensors.get('y')!.dtype).toBe('F32');
    const back = new Float32Array(1000);
    const view = new DataView(st.tensors.get('x')!.bytes.buffer, st.tensors.get('x')!.bytes.byteOffset);
    for (let i = 0; i < 1000; i++) back[i] = halfToFloat(view.getUint16(2 * i, true));
    expectSameArray(back, roundToHalf(data), 'F16 tensor');
    await expect(
      writeSafetensors(join(dir, 'big.safetensors'), [{ name: 'z', shape: [1], data: new Float32Array([7e4]), dtype: 'F16' }], {}),
    ).rejects.toThrow(/tensor z: 70000 cannot be stored as float16/);
  });
});

describe('the embedded VGG-19 blocks 1-3', () => {
  it('loads as conv1_1 .. conv3_4 with caffe preprocessing, its checksum and its own loss layers', async () => {
    expect(await sha256File(embeddedWeightsPath())).toBe(EMBEDDED_SHA256);
    const { set, details } = await loadWeightsDetailed(EMBEDDED_SOURCE);
    expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv3_4']);
    expect(set.preprocessing).toEqual(PREPROCESSING.caffeBgr);
    expect(set.sha256).toBe(EMBEDDED_SHA256);
    expect(set.source).toBe(EMBEDDED_SOURCE);
    expect(set.defaultLayers).toEqual({
      contentLayers: [{ layer: 'conv3_2', weight: 1 }],
      styleLayers: [
        { layer: 'conv1_1', weight: 1 / 3 },
        { layer: 'conv2_1', weight: 1 / 3 },
        { layer: 'conv3_1', weight: 1 / 3 },
      ],
    });
    expect(details.licence).toMatch(/CC BY 4\.0/);
    expect(details.credit).toMatch(/Simonyan and Andrew Zisserman/);
    expect(details.file).toBe(embeddedWeightsPath());
  });

  it.skipIf(!haveShared)(
    `holds the Keras release's values (the TF.js set in ../shared${haveShared ? '' : ': absent, skipped'})`,
    async () => {
      const [embedded, shared] = await Promise.all([loadWeights(EMBEDDED_SOURCE), loadWeights(sharedWeights)]);
      const f16 = (await readSafetensors(embeddedWeightsPath())).tensors.get('conv1_1.kernel')!.dtype === 'F16';
      embedded.layers.forEach((l, i) => {
        const s = shared.layers[i];
        expectSameArray(l.kernel, f16 ? roundToHalf(s.kernel) : s.kernel, `${l.name} kernel`);
        expectSameArray(l.bias, f16 ? roundToHalf(s.bias) : s.bias, `${l.name} bias`);
      });
    },
  );

  it('a damaged copy is refused in one line naming the file and both checksums', async () => {
    const copy = join(newDir(), 'damaged.safetensors');
    copyFileSync(embeddedWeightsPath(), copy);
    await verifySha256(copy, EMBEDDED_SHA256, 'the built-in weights');
    const bytes = readFileSync(copy);
    bytes[bytes.length - 5] ^= 1;
    writeFileSync(copy, bytes);
    const err = await verifySha256(copy, EMBEDDED_SHA256, 'the built-in weights').catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect((err as UserError).field).toBe('weights');
    expect((err as UserError).detail).toMatch(
      new RegExp(`^${copy}: the built-in weights are damaged \\(SHA-256 [0-9a-f]{64}, expected ${EMBEDDED_SHA256}\\)`),
    );
  });

  it('default_layers metadata is checked', () => {
    expect(() => parseDefaultLayers('{')).toThrow(/not valid JSON/);
    expect(() => parseDefaultLayers('{"contentLayers":[],"styleLayers":[{"layer":"conv1_1","weight":1}]}')).toThrow(
      /non-empty list contentLayers/,
    );
    expect(() =>
      parseDefaultLayers('{"contentLayers":[{"layer":"conv9_1","weight":1}],"styleLayers":[{"layer":"conv1_1","weight":1}]}'),
    ).toThrow(/unknown layer/);
    expect(() =>
      parseDefaultLayers('{"contentLayers":[{"layer":"conv3_2","weight":0}],"styleLayers":[{"layer":"conv1_1","weight":1}]}'),
    ).toThrow(/positive weights/);
  });
});
