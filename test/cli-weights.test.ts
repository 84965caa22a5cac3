import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isUserError } from '@nst/core';
import { CACHE_FILE_NAME, WeightsError, loadWeights, randomWeights, writeSafetensors } from '@nst/weights';
import { registerWeightsCommands } from '@nst/cli';
// The weight readers' test fixtures: reference values and a .pth writer.
import { expectSameArray, haveShared, referenceLayer, sharedWeights, tempDir } from '../packages/weights/test/helpers.js';
import { zipPth } from '../packages/weights/test/torchfile.js';

const { path: tmp, cleanup } = tempDir();
afterAll(() => cleanup());
let n = 0;
beforeEach(() => {
  process.env.NST_CACHE_DIR = join(tmp, `cache${n++}`);
});

/** Runs `nst weights ...` in-process; returns stdout lines, or throws the action's error. */
async function nst(...args: string[]): Promise<string[]> {
  const program = new Command('nst').exitOverride();
  registerWeightsCommands(program);
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
  try {
    await program.parseAsync(['node', 'nst', 'weights', ...args]);
  } finally {
    spy.mockRestore();
  }
  return lines.join('').split('\n').filter(Boolean);
}

const l0 = referenceLayer(0);
const oihw = new Float32Array(l0.kernel.length);
for (let o = 0; o < 64; o++)
  for (let i = 0; i < 3; i++)
    for (let h = 0; h < 3; h++) for (let w = 0; w < 3; w++) oihw[((o * 3 + i) * 3 + h) * 3 + w] = l0.kernel[((h * 3 + w) * 3 + i) * 64 + o];
const pth = join(tmp, 'one-layer.pth');
writeFileSync(
  pth,
  zipPth([
    { key: 'features.0.weight', storageKey: '0', data: oihw, offset: 0, size: [64, 3, 3, 3], stride: [27, 9, 3, 1] },
    { key: 'features.0.bias', storageKey: '1', data: l0.bias, offset: 0, size: [64], stride: [1] },
  ]),
);

describe('nst weights import / info', () => {
  it('imports a file into the cache (with a preprocessing override) and shows it', async () => {
    const [line] = await nst('import', pth, '--preprocessing', 'caffe-bgr');
    const cache = join(process.env.NST_CACHE_DIR!, CACHE_FILE_NAME);
    expect(line).toContain(cache);
    const set = await loadWeights(cache);
    expect(set.preprocessing.name).toBe('caffe-bgr');
    expectSameArray(set.layers[0].kernel, l0.kernel, 'conv1_1 kernel');
    const info = await nst('info');
    const field = (k: string) =>
      info
        .find((l) => l.startsWith(`${k}:`))
        ?.slice(k.length + 1)
        .trim();
    expect(field('format')).toBe('safetensors');
    expect(field('preprocessing')).toBe('caffe-bgr: BGR, 0..255, minus mean [103.939, 116.779, 123.68]');
    expect(field('cache of')).toBe(pth);
    expect(field('original format')).toBe('pth');
    expect(info).toContain('  conv1_1  kernel 3x3x3x64 (HWIO)  bias 64');
    const json = JSON.parse((await nst('info', pth, '--json'))[0]);
    expect(json.format).toBe('pth');
    expect(json.layers).toEqual([{ name: 'conv1_1', kernel: [3, 3, 3, 64], bias: [64], dtype: 'float32' }]);
    expect(json.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('says how to get weights when the cache is empty (and shows the built-in set), and names a bad file', async () => {
    const empty = await nst('info');
    expect(empty[0]).toMatch(/^no full VGG-19 in the cache .* run `nst weights fetch`/);
    expect(empty.find((l) => l.startsWith('source:'))).toMatch(/^source: +embedded$/);
    const junk = join(tmp, 'junk.bin');
    writeFileSync(junk, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const err = await nst('import', junk).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`^${junk}: not a recognised VGG-19 weight file`));
    expect(existsSync(join(process.env.NST_CACHE_DIR!, CACHE_FILE_NAME))).toBe(false);
  });

  it('never replaces a fuller cache with fewer layers unless --force, and reports the layers stored', async () => {
    // A file with all 16 convs: the cache keeps conv1_1 .. conv5_1 (13), and says so.
    const full = randomWeights(3);
    const fullPath = join(tmp, 'full.safetensors');
    await writeSafetensors(
      fullPath,
      full.layers.flatMap((l) => [
        { name: `${l.name}.kernel`, shape: [3, 3, l.inChannels, l.outChannels], data: l.kernel },
        { name: `${l.name}.bias`, shape: [l.outChannels], data: l.bias },
      ]),
      {},
    );
    const cache = join(process.env.NST_CACHE_DIR!, CACHE_FILE_NAME);
    expect(await nst('import', fullPath)).toEqual([expect.stringMatching(/: 13 layers \(conv1_1 \.\. conv5_1\) from safetensors /)]);
    // The one-layer .pth would replace 13 layers by 1: refused, naming the flag; the cache is untouched.
    const err = await nst('import', pth).catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect((err as Error).message).toMatch(
      /holds 13 layers \(conv1_1 \.\. conv5_1\); .* would store only 1 layers \(conv1_1 \.\. conv1_1\).*pass --force/,
    );
    expect(((err as Error).cause as WeightsError).reason).toBe('WEIGHTS_CACHE_DOWNGRADE');
    expect(((err as Error).cause as WeightsError).field).toBe('force');
    const kept = await loadWeights(cache);
    expect(kept.layers.length).toBe(13);
    expectSameArray(kept.layers[12].kernel, full.layers[12].kernel, 'conv5_1 kernel kept');
    // With --force it is replaced, and the message counts what was stored.
    expect(await nst('import', pth, '--force')).toEqual([expect.stringMatching(/: 1 layers \(conv1_1 \.\. conv1_1\) from pth /)]);
    expect((await loadWeights(cache)).layers.length).toBe(1);
    // An equal or fuller set replaces it without --force.
    expect(await nst('import', fullPath)).toEqual([expect.stringMatching(/: 13 layers/)]);
  });

  it.skipIf(!haveShared)('imports the shared real TF.js set', async () => {
    const [line] = await nst('import', sharedWeights);
    expect(line).toMatch(/8 layers \(conv1_1 \.\. conv3_4\) from tfjs-layers/);
  });
});

describe('nst weights compare', () => {
  it('finds the symmetry and channel order that map one conv1_1 onto another', async () => {
    // b = a's conv1_1 transposed (h <-> w) with the input channels reversed (RGB <-> BGR), as a .pth.
    const t = new Float32Array(l0.kernel.length);
    for (let o = 0; o < 64; o++)
      for (let i = 0; i < 3; i++)
        for (let h = 0; h < 3; h++)
          for (let w = 0; w < 3; w++) t[((o * 3 + i) * 3 + h) * 3 + w] = l0.kernel[((w * 3 + h) * 3 + (2 - i)) * 64 + o];
    const b = join(tmp, 'transposed.pth');
    writeFileSync(
      b,
      zipPth([
        { key: 'features.0.weight', storageKey: '0', data: t, offset: 0, size: [64, 3, 3, 3], stride: [27, 9, 3, 1] },
        { key: 'features.0.bias', storageKey: '1', data: l0.bias, offset: 0, size: [64], stride: [1] },
      ]),
    );
    const lines = await nst('compare', pth, b);
    expect(lines[0]).toMatch(/^ *0\.00e\+0 {2}transpose \(swap height and width\), input channels reversed$/);
    expect(Number(lines[1].trim().split(/\s+/)[0])).toBeGreaterThan(0.01);
  });
});
