import { readFileSync, writeFileSync, mkdirSync, unlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PREPROCESSING, isUserError } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { expectSameArray, haveShared, newDir, referenceLayer, sharedWeights } from './helpers.js';

/** IEEE half of a value exactly representable in half (the test picks such values). */
function toHalf(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const frac = Math.round((a / 2 ** e - 1) * 1024);
  if (frac >= 1024 || e + 15 <= 0) throw new Error(`test value ${v} not representable as a normal half`);
  return sign | ((e + 15) << 10) | frac;
}

type Entry = { name: string; shape: number[]; bytes: Buffer; dtype?: string; quantization?: object };
const f32 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Writes model.json + shards: each group's bytes split into `shards` files at arbitrary byte boundaries. */
function writeTfjs(dir: string, groups: Array<{ entries: Entry[]; shards: number }>): void {
  mkdirSync(dir, { recursive: true });
  const manifest = groups.map((g, gi) => {
    const all = Buffer.concat(g.entries.map((e) => e.bytes));
    const paths: string[] = [];
    for (let s = 0; s < g.shards; s++) {
      const name = `group${gi + 1}-shard${s + 1}of${g.shards}`;
      // Uneven cut points (not multiples of 4) so that a value straddles two shards.
      const from = Math.floor((all.length * s) / g.shards) + (s > 0 ? 3 : 0);
      const to = s === g.shards - 1 ? all.length : Math.floor((all.length * (s + 1)) / g.shards) + 3;
      writeFileSync(join(dir, name), all.subarray(from, to));
      paths.push(name);
    }
    return {
      paths,
      weights: g.entries.map((e) => ({
        name: e.name,
        shape: e.shape,
        dtype: e.dtype ?? 'float32',
        ...(e.quantization ? { quantization: e.quantization } : {}),
      })),
    };
  });
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ modelTopology: { class_name: 'Model' }, weightsManifest: manifest }));
}

describe('TF.js layers model', () => {
  const L0 = referenceLayer(0);
  const L1 = referenceLayer(1);
  const L2 = referenceLayer(2);

  // conv1_2's kernel is uint8-quantised: q = round((v - min) / scale), dequantised as min + scale * q.
  const min = -1;
  const scale = 2 / 255;
  const q8 = Uint8Array.from(L1.kernel, (v) => Math.round((v - min) / scale));
  const expectedK1 = Float32Array.from(q8, (q) => min + scale * q);
  // conv1_2's bias as float16: values k / 1024 (exact in half).
  const halfBias = Float32Array.from(L1.bias, (v) => Math.round(v * 512) / 1024 + (v < 0 ? -1 : 1) * 0.25);
  const halfBytes = Buffer.alloc(2 * halfBias.length);
  halfBias.forEach((v, i) => halfBytes.writeUInt16LE(toHalf(v), 2 * i));
  // conv2_1's kernel uint16-quantised.
  const scale16 = 2 / 65535;
  const q16 = Uint16Array.from(L2.kernel, (v) => Math.round((v - min) / scale16));
  const expectedK2 = Float32Array.from(q16, (q) => min + scale16 * q);

  function writeExample(dir: string): void {
    writeTfjs(dir, [
      {
        shards: 3,
        entries: [
          { name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], bytes: f32(L0.kernel) },
          { name: 'block1_conv1/bias', shape: [64], bytes: f32(L0.bias) },
        ],
      },
      {
        shards: 2,
        entries: [
          { name: 'block1_conv2/kernel', shape: [3, 3, 64, 64], bytes: Buffer.from(q8), quantization: { dtype: 'uint8', min, scale } },
          { name: 'unrelated/dense', shape: [5, 7], bytes: Buffer.alloc(35 * 4, 7) },
          { name: 'block1_conv2/bias', shape: [64], bytes: halfBytes, quantization: { dtype: 'float16' } },
        ],
      },
      {
        shards: 1,
        entries: [
          {
            name: 'vgg19/block2_conv1/kernel',
            shape: [3, 3, 64, 128],
            bytes: Buffer.from(q16.buffer),
            quantization: { dtype: 'uint16', min, scale: scale16 },
          },
          { name: 'vgg19/block2_conv1/bias', shape: [128], bytes: f32(L2.bias) },
        ],
      },
    ]);
  }

  it('reads multi-shard groups, uint8/uint16/float16 quantisation, and skips unrelated weights', async () => {
    const dir = newDir();
    writeExample(dir);
    for (const source of [dir, join(dir, 'model.json')]) {
      const set = await loadWeights(source);
      expect(set.format).toBe('tfjs-layers');
      expect(set.preprocessing).toEqual(PREPROCESSING.caffeBgr);
      expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1']);
      expectSameArray(set.layers[0].kernel, L0.kernel, 'conv1_1 kernel');
      expectSameArray(set.layers[0].bias, L0.bias, 'conv1_1 bias');
      expectSameArray(set.layers[1].kernel, expectedK1, 'conv1_2 kernel');
      expectSameArray(set.layers[1].bias, halfBias, 'conv1_2 bias');
      expectSameArray(set.layers[2].kernel, expectedK2, 'conv2_1 kernel');
      expectSameArray(set.layers[2].bias, L2.bias, 'conv2_1 bias');
      // The hash covers model.json and every shard read, in manifest order.
      const h = createHash('sha256').update(readFileSync(join(dir, 'model.json')));
      for (const g of [
        'group1-shard1of3',
        'group1-shard2of3',
        'group1-shard3of3',
        'group2-shard1of2',
        'group2-shard2of2',
        'group3-shard1of1',
      ])
        h.update(readFileSync(join(dir, g)));
      expect(set.sha256).toBe(h.digest('hex'));
    }
    // The quantised kernel stays within half a step of the original values.
    expect(Math.max(...Array.from(expectedK1, (v, i) => Math.abs(v - L1.kernel[i])))).toBeLessThanOrEqual(scale / 2 + 1e-6);
  });

  const bad: Array<[string, (dir: string) => void, RegExp]> = [
    ['a missing shard', (d) => unlinkSync(join(d, 'group2-shard2of2')), /shard group2-shard2of2 of group 2 cannot be read \(ENOENT\)/],
    ['an empty shard', (d) => writeFileSync(join(d, 'group2-shard2of2'), ''), /group 2's shards hold/],
    ['a truncated shard', (d) => writeFileSync(join(d, 'group3-shard1of1'), Buffer.alloc(100)), /group 3's shards hold 100/],
    ['invalid JSON', (d) => writeFileSync(join(d, 'model.json'), '{"weightsManifest": ['), /not valid JSON/],
    ['no manifest', (d) => writeFileSync(join(d, 'model.json'), '{"modelTopology": {}}'), /no weightsManifest/],
    [
      'a wrong kernel shape',
      (d) => {
        const j = JSON.parse(readFileSync(join(d, 'model.json'), 'utf8'));
        j.weightsManifest[2].weights[0].shape = [3, 3, 64, 64];
        j.weightsManifest[2].weights[1].shape = [64];
        writeFileSync(join(d, 'model.json'), JSON.stringify(j));
      },
      /conv2_1 kernel has shape \[3, 3, 64, 64\], VGG-19 needs \[3, 3, 64, 128\]/,
    ],
    [
      'a gap in the layers',
      (d) => {
        const j = JSON.parse(readFileSync(join(d, 'model.json'), 'utf8'));
        j.weightsManifest[1].weights[0].name = 'x/kernel';
        j.weightsManifest[1].weights[2].name = 'x/bias';
        writeFileSync(join(d, 'model.json'), JSON.stringify(j));
      },
      /has conv2_1 but lacks conv1_2/,
    ],
    [
      'a shard path leaving the folder',
      (d) => {
        const j = JSON.parse(readFileSync(join(d, 'model.json'), 'utf8'));
        j.weightsManifest[0].paths[0] = '../../etc/passwd';
        writeFileSync(join(d, 'model.json'), JSON.stringify(j));
      },
      /leaves the model's folder/,
    ],
  ];
  for (const [what, damage, message] of bad)
    it(`rejects ${what} with a one-line error naming the file`, async () => {
      const dir = newDir();
      writeExample(dir);
      damage(dir);
      const err = await loadWeights(dir).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isUserError(err)).toBe(true);
      const msg = (err as Error).message;
      expect(msg.startsWith(dir)).toBe(true);
      expect(msg).toMatch(message);
      expect(msg).not.toContain('\n');
    });
});

describe.skipIf(!haveShared)('the shared real TF.js set (../shared)', () => {
  it('loads all 8 layers with the values stored in the shards', async () => {
    const t0 = performance.now();
    const set = await loadWeights(sharedWeights);
    console.log(`load time of the shared TF.js set (8 layers, 9 MB): ${(performance.now() - t0).toFixed(0)} ms`);
    expect(set.layers.map((l) => l.name)).toEqual(['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv3_4']);
    expect(set.preprocessing.name).toBe('caffe-bgr');
    // Each group-k shard is kernel (3,3,in,out) then bias, float32 little-endian (../shared/README.md).
    set.layers.forEach((l, k) => {
      const raw = readFileSync(join(sharedWeights, `group${k + 1}-shard1of1`));
      const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      expectSameArray(l.kernel, values.subarray(0, l.kernel.length), `${l.name} kernel`);
      expectSameArray(l.bias, values.subarray(l.kernel.length), `${l.name} bias`);
    });
    // Sanity of the real values: trained first-layer filters are far from He-random (structure), and finite.
    expect(set.layers[0].kernel.some((v) => v !== 0)).toBe(true);
  });
});
