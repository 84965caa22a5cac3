import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PREPROCESSING, VGG19_LAYERS, isUserError } from '@nst/core';
import { cacheDir, loadWeights, randomWeights, resolveDefaultWeights, writeCache, CACHE_FILE_NAME } from '@nst/weights';
import { expectSameArray, haveShared, newDir, sharedWeights } from './helpers.js';

describe('random:SEED', () => {
  it('has every VGG-19 layer and is deterministic per seed', async () => {
    const t0 = performance.now();
    const a = randomWeights(42);
    const ms = performance.now() - t0;
    console.log(`randomWeights (16 layers, 20.0M parameters): ${ms.toFixed(0)} ms`);
    expect(a.layers.map((l) => l.name)).toEqual(VGG19_LAYERS.map((l) => l.name));
    expect(a.source).toBe('random:42');
    expect(a.preprocessing).toEqual(PREPROCESSING.caffeBgr);
    const b = await loadWeights('random:42');
    a.layers.forEach((l, i) => expectSameArray(b.layers[i].kernel, l.kernel, l.name));
    const c = randomWeights(43);
    expect(c.layers[0].kernel[0]).not.toBe(a.layers[0].kernel[0]);
  });

  it('draws He-normal kernels: mean 0, std sqrt(2/(9 in)), normal tail fractions', () => {
    const set = randomWeights(1);
    for (const idx of [0, 4, 12]) {
      const l = set.layers[idx];
      const std = Math.sqrt(2 / (9 * l.inChannels));
      let s1 = 0,
        s2 = 0,
        within1 = 0,
        within2 = 0;
      for (const v of l.kernel) {
        s1 += v;
        s2 += v * v;
        if (Math.abs(v) < std) within1++;
        if (Math.abs(v) < 2 * std) within2++;
      }
      const n = l.kernel.length;
      const mean = s1 / n;
      const sd = Math.sqrt(s2 / n - mean * mean);
      // Tolerances: 5 standard errors of each estimate.
      expect(Math.abs(mean)).toBeLessThan((5 * std) / Math.sqrt(n));
      expect(Math.abs(sd / std - 1)).toBeLessThan(5 * Math.sqrt(0.5 / n));
      expect(Math.abs(within1 / n - 0.682689)).toBeLessThan(5 * Math.sqrt((0.6827 * 0.3173) / n));
      expect(Math.abs(within2 / n - 0.9545)).toBeLessThan(5 * Math.sqrt((0.9545 * 0.0455) / n));
      const biasMax = Math.max(...Array.from(l.bias, Math.abs));
      expect(biasMax).toBeGreaterThan(0);
      expect(biasMax).toBeLessThan(0.06);
    }
  });

  it('rejects a malformed seed', async () => {
    const err = await loadWeights('random:x1').catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect((err as Error).message).toMatch(/^random:x1: /);
  });
});

describe('the safetensors cache', () => {
  it('holds conv1_1..conv5_1 of a full set, bit-exact, and loads in well under a second', async () => {
    const dir = newDir();
    const set = randomWeights(5);
    const path = await writeCache({ ...set, sha256: 'ab'.repeat(32) }, join(dir, CACHE_FILE_NAME));
    const bytes = readFileSync(path);
    // Independent check of the layout: header length, JSON header, 8-byte aligned data.
    const headerLen = Number(bytes.readBigUInt64LE(0));
    expect((8 + headerLen) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
    expect(header.__metadata__.source_sha256).toBe('ab'.repeat(32));
    expect(header['conv5_1.kernel'].shape).toEqual([3, 3, 512, 512]);
    expect(header['conv5_2.kernel']).toBeUndefined();
    console.log(`cache file size: ${(bytes.length / 1e6).toFixed(1)} MB`);
    const t0 = performance.now();
    const back = await loadWeights(path);
    const ms = performance.now() - t0;
    console.log(`cache load time (13 layers): ${ms.toFixed(0)} ms`);
    expect(back.layers.map((l) => l.name)).toEqual(VGG19_LAYERS.slice(0, 13).map((l) => l.name));
    expect(back.format).toBe('safetensors');
    expect(back.sha256).toBe('ab'.repeat(32));
    expect(back.preprocessing).toEqual(set.preprocessing);
    back.layers.forEach((l, i) => {
      expectSameArray(l.kernel, set.layers[i].kernel, `${l.name} kernel`);
      expectSameArray(l.bias, set.layers[i].bias, `${l.name} bias`);
      const h = header[`${l.name}.kernel`];
      const raw = bytes.subarray(8 + headerLen + h.data_offsets[0], 8 + headerLen + h.data_offsets[1]);
      expect(raw.readFloatLE(4 * 17)).toBe(set.layers[i].kernel[17]);
    });
  });

  it('reads torchvision-named OIHW kernels from a third-party safetensors file', async () => {
    const dir = newDir();
    // conv1_1 as features.0.weight (64, 3, 3, 3): element (o, i, h, w) = o*1000 + i*100 + h*10 + w.
    const w = Float32Array.from({ length: 64 * 27 }, (_, k) => {
      const o = Math.floor(k / 27),
        i = Math.floor(k / 9) % 3,
        h = Math.floor(k / 3) % 3,
        x = k % 3;
      return o * 1000 + i * 100 + h * 10 + x;
    });
    const b = Float32Array.from({ length: 64 }, (_, k) => k / 4);
    const header = JSON.stringify({
      'features.0.weight': { dtype: 'F32', shape: [64, 3, 3, 3], data_offsets: [0, w.byteLength] },
      'features.0.bias': { dtype: 'F32', shape: [64], data_offsets: [w.byteLength, w.byteLength + b.byteLength] },
    });
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const path = join(dir, 'torch.safetensors');
    writeFileSync(path, Buffer.concat([len, Buffer.from(header), Buffer.from(w.buffer), Buffer.from(b.buffer)]));
    const set = await loadWeights(path);
    expect(set.preprocessing).toEqual(PREPROCESSING.torchvision);
    const k = set.layers[0].kernel;
    for (const [h, x, i, o] of [
      [0, 0, 0, 0],
      [2, 1, 0, 5],
      [1, 2, 2, 63],
    ])
      expect(k[((h * 3 + x) * 3 + i) * 64 + o]).toBe(o * 1000 + i * 100 + h * 10 + x);
    expectSameArray(set.layers[0].bias, b, 'bias');
  });

  it('finds its folder from NST_CACHE_DIR, XDG_CACHE_HOME, or HOME; NST_WEIGHTS wins', async () => {
    const saved = { ...process.env };
    try {
      process.env.NST_CACHE_DIR = '/x/nst-cache';
      expect(cacheDir()).toBe('/x/nst-cache');
      delete process.env.NST_CACHE_DIR;
      process.env.XDG_CACHE_HOME = '/y';
      expect(cacheDir()).toBe('/y/nst');
      delete process.env.XDG_CACHE_HOME;
      process.env.HOME = '/home/someone';
      expect(cacheDir()).toBe('/home/someone/.cache/nst');
      const dir = newDir();
      process.env.NST_CACHE_DIR = dir;
      expect(await resolveDefaultWeights()).toBeUndefined();
      await writeCache(randomWeights(1));
      expect(await resolveDefaultWeights()).toBe(join(dir, CACHE_FILE_NAME));
      process.env.NST_WEIGHTS = 'random:9';
      expect(await resolveDefaultWeights()).toBe('random:9');
    } finally {
      process.env = saved;
    }
  });
});

describe.skipIf(!haveShared)('the shared real set through the cache', () => {
  it('goes to the cache and back bit-exactly, keeping its preprocessing and checksum', async () => {
    const dir = newDir();
    const set = await loadWeights(sharedWeights);
    const path = await writeCache(set, join(dir, CACHE_FILE_NAME));
    const t0 = performance.now();
    const back = await loadWeights(path);
    console.log(`cache load time of the shared set: ${(performance.now() - t0).toFixed(0)} ms`);
    expect(back.layers.length).toBe(8);
    expect(back.preprocessing).toEqual(PREPROCESSING.caffeBgr);
    expect(back.sha256).toBe(set.sha256);
    back.layers.forEach((l, i) => {
      expectSameArray(l.kernel, set.layers[i].kernel, `${l.name} kernel`);
      expectSameArray(l.bias, set.layers[i].bias, `${l.name} bias`);
    });
  });
});
