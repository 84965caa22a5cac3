/**
 * Mutation fuzzing of every weight format, shared by the test suite (a small
 * sample, every bomb included) and bench/fuzz-weights.ts (100,000 cases).
 * Each format's corpus is a small valid file (conv1_1, so that mutations hit
 * structure often) and the structural bombs of bombs.ts aimed at its reader.
 * A format's first cases run each bomb as it is; after that a case mutates
 * the seed or, BOMB_SHARE of the time, a bomb. Mutations are truncations,
 * bit flips, overwritten runs, duplicated or deleted chunks, and plain random
 * bytes. A case passes when loading either succeeds or throws a one-line
 * UserError naming the file (an unmutated bomb must fail).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng, isUserError } from '@nst/core';
import { loadWeights, writeSafetensors } from '@nst/weights';
import { allBombs, type Bomb } from './bombs.js';
import { referenceLayer } from './reference.js';
import { matConvLayer, matFile, type MatValue } from './matfile.js';
import { legacyPth, tarPth, zipPth, type TorchTensor } from './torchfile.js';

export interface FuzzSeed {
  readonly format: string;
  /** Files of the seed; `main` is the one mutated (for TF.js, model.json or a shard at random). */
  readonly files: ReadonlyArray<{ name: string; bytes: Buffer }>;
  /** The path passed to loadWeights, relative to the case folder. */
  readonly open: string;
}

const l0 = referenceLayer(0);
const f32 = (a: Float32Array) => Buffer.from(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

function torchTensors(): TorchTensor[] {
  const oihw = new Float32Array(l0.kernel.length);
  for (let o = 0; o < 64; o++)
    for (let i = 0; i < 3; i++)
      for (let h = 0; h < 3; h++)
        for (let w = 0; w < 3; w++) oihw[((o * 3 + i) * 3 + h) * 3 + w] = l0.kernel[((h * 3 + w) * 3 + i) * 64 + o];
  return [
    { key: 'features.0.weight', storageKey: '0', data: oihw, offset: 0, size: [64, 3, 3, 3], stride: [27, 9, 3, 1] },
    { key: 'features.0.bias', storageKey: '1', data: l0.bias, offset: 0, size: [64], stride: [1] },
  ];
}

function matNetwork(): Array<[string, MatValue]> {
  const str = (text: string): MatValue => ({ t: 'char', text });
  const conv = matConvLayer('conv1_1', l0.kernel, l0.bias, 3, 64);
  const relu: MatValue = {
    t: 'struct',
    fields: [
      ['name', str('relu1_1')],
      ['type', str('relu')],
      ['weights', { t: 'cell', dims: [0, 0], items: [] }],
    ],
  };
  const meta: MatValue = {
    t: 'struct',
    fields: [
      ['normalization', { t: 'struct', fields: [['averageImage', { t: 'single', dims: [1, 1, 3], data: [123.68, 116.779, 103.939] }]] }],
    ],
  };
  return [
    ['layers', { t: 'cell', dims: [1, 2], items: [conv, relu] }],
    ['meta', meta],
  ];
}

async function kerasH5(path: string): Promise<Buffer> {
  const h5wasm = (await import('h5wasm/node')).default;
  await h5wasm.ready;
  const f = new h5wasm.File(path, 'w');
  f.create_attribute('layer_names', ['input_1', 'block1_conv1'], null, 'S16');
  f.create_group('input_1');
  const g = f.create_group('block1_conv1');
  g.create_attribute('weight_names', ['block1_conv1/kernel:0', 'block1_conv1/bias:0'], null, 'S32');
  const inner = g.create_group('block1_conv1');
  inner.create_dataset({ name: 'kernel:0', data: l0.kernel, shape: [3, 3, 3, 64], dtype: '<f' });
  inner.create_dataset({ name: 'bias:0', data: l0.bias, shape: [64], dtype: '<f' });
  f.close();
  const { readFileSync } = await import('node:fs');
  return readFileSync(path);
}

/** One small valid file (or folder) per format. */
export async function fuzzSeeds(scratch: string): Promise<FuzzSeed[]> {
  mkdirSync(scratch, { recursive: true });
  const manifest = {
    modelTopology: { class_name: 'Model' },
    weightsManifest: [
      {
        paths: ['group1-shard1of2', 'group1-shard2of2'],
        weights: [
          { name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], dtype: 'float32' },
          { name: 'block1_conv1/bias', shape: [64], dtype: 'float16', quantization: undefined },
        ],
      },
    ],
  };
  manifest.weightsManifest[0].weights[1] = { name: 'block1_conv1/bias', shape: [64], dtype: 'float32' };
  const group = Buffer.concat([f32(l0.kernel), f32(l0.bias)]);
  const safetensorsPath = join(scratch, 'seed.safetensors');
  await writeSafetensors(
    safetensorsPath,
    [
      { name: 'conv1_1.kernel', shape: [3, 3, 3, 64], data: l0.kernel },
      { name: 'conv1_1.bias', shape: [64], data: l0.bias },
    ],
    {
      format: 'nst-vgg19-cache',
      preprocessing: '{"name":"caffe-bgr","channelOrder":"bgr","scale":255,"mean":[103.939,116.779,123.68],"std":[1,1,1]}',
    },
  );
  const { readFileSync } = await import('node:fs');
  return [
    {
      format: 'tfjs-layers',
      files: [
        { name: 'model.json', bytes: Buffer.from(JSON.stringify(manifest)) },
        { name: 'group1-shard1of2', bytes: group.subarray(0, 4000) },
        { name: 'group1-shard2of2', bytes: group.subarray(4000) },
      ],
      open: '.',
    },
    { format: 'safetensors', files: [{ name: 'w.safetensors', bytes: readFileSync(safetensorsPath) }], open: 'w.safetensors' },
    { format: 'keras-h5', files: [{ name: 'w.h5', bytes: await kerasH5(join(scratch, 'seed.h5')) }], open: 'w.h5' },
    { format: 'matconvnet-v6', files: [{ name: 'w.mat', bytes: matFile(matNetwork(), false) }], open: 'w.mat' },
    { format: 'matconvnet-v7', files: [{ name: 'w.mat', bytes: matFile(matNetwork(), true) }], open: 'w.mat' },
    { format: 'pth-zip', files: [{ name: 'w.pth', bytes: zipPth(torchTensors()) }], open: 'w.pth' },
    { format: 'pth-zip-deflated', files: [{ name: 'w.pth', bytes: zipPth(torchTensors(), { deflate: true }) }], open: 'w.pth' },
    { format: 'pth-legacy', files: [{ name: 'w.pth', bytes: legacyPth(torchTensors()) }], open: 'w.pth' },
    { format: 'pth-tar', files: [{ name: 'w.pth', bytes: tarPth(torchTensors()) }], open: 'w.pth' },
  ];
}

const int = (rng: Rng, n: number) => Math.floor(rng.uniform() * n);

/** One random mutation of `b`. Structure sits near the start, so half the edits aim at the first 512 bytes. */
export function mutate(b: Buffer, rng: Rng): { bytes: Buffer; kind: string } {
  const pos = (len: number) => (rng.uniform() < 0.5 ? int(rng, Math.min(len, 512)) : int(rng, len));
  const out = Buffer.from(b);
  switch (int(rng, 6)) {
    case 0:
      return { bytes: b.subarray(0, int(rng, b.length)), kind: 'truncate' };
    case 1: {
      const flips = 1 + int(rng, 8);
      for (let i = 0; i < flips; i++) out[pos(out.length)] ^= 1 << int(rng, 8);
      return { bytes: out, kind: `flip ${flips} bits` };
    }
    case 2: {
      // A run of random bytes, or of 0xff (large lengths and offsets).
      const at = pos(out.length);
      const len = 1 + int(rng, 16);
      const ff = rng.uniform() < 0.5;
      for (let i = at; i < Math.min(at + len, out.length); i++) out[i] = ff ? 0xff : int(rng, 256);
      return { bytes: out, kind: ff ? 'overwrite 0xff' : 'overwrite random' };
    }
    case 3: {
      const at = pos(b.length);
      const len = 1 + int(rng, 64);
      return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + len)]), kind: 'delete chunk' };
    }
    case 4: {
      const at = pos(b.length);
      const from = int(rng, b.length);
      return {
        bytes: Buffer.concat([b.subarray(0, at), b.subarray(from, from + 1 + int(rng, 64)), b.subarray(at)]),
        kind: 'duplicate chunk',
      };
    }
    default: {
      const len = int(rng, 2 * b.length);
      const r = Buffer.alloc(len);
      for (let i = 0; i < len; i++) r[i] = int(rng, 256);
      // Keep the seed's first bytes sometimes, so that detection picks the format and its parser sees the garbage.
      if (rng.uniform() < 0.7) b.copy(r, 0, 0, Math.min(len, 16));
      return { bytes: r, kind: 'random bytes' };
    }
  }
}

export type Outcome = 'loaded' | 'user-error' | 'crash';
export interface CaseResult {
  readonly outcome: Outcome;
  readonly kind: string;
  readonly ms: number;
  readonly message: string;
}

/** A format's seed and the bombs aimed at its reader. */
export interface FuzzCorpus {
  readonly seed: FuzzSeed;
  readonly bombs: readonly Bomb[];
}

/** Every format's corpus (seeds and bombs are written under `scratch`). */
export async function fuzzCorpora(scratch: string): Promise<FuzzCorpus[]> {
  const seeds = await fuzzSeeds(join(scratch, 'seeds'));
  mkdirSync(join(scratch, 'bombs'), { recursive: true });
  const bombs = await allBombs(join(scratch, 'bombs'));
  const unused = bombs.filter((b) => !seeds.some((s) => s.format === b.format));
  if (unused.length) throw new Error(`bombs for no fuzzed format: ${unused.map((b) => b.format).join(', ')}`);
  return seeds.map((seed) => ({ seed, bombs: bombs.filter((b) => b.format === seed.format) }));
}

/** The share of mutation cases that mutate a bomb rather than the valid seed. */
export const BOMB_SHARE = 0.01;

/**
 * Writes case `i` of `corpus` into `dir` (the draws from `rng` make it
 * reproducible); returns the path to load, what the case is, and whether it
 * is an unmutated bomb (which must not load).
 */
export function prepareCase(corpus: FuzzCorpus, i: number, dir: string, rng: Rng): { path: string; kind: string; bomb: boolean } {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const { seed, bombs } = corpus;
  let source: { files: FuzzSeed['files']; open: string; name: string } = { files: seed.files, open: seed.open, name: 'seed' };
  if (i < bombs.length) {
    const b = bombs[i];
    b.files.forEach((f) => writeFileSync(join(dir, f.name), f.bytes));
    return { path: join(dir, b.open), kind: `bomb ${b.name}`, bomb: true };
  }
  if (bombs.length > 0 && rng.uniform() < BOMB_SHARE) {
    const b = bombs[int(rng, bombs.length)];
    source = { files: b.files, open: b.open, name: `bomb ${b.name}` };
  }
  const target = int(rng, source.files.length);
  let kind = '';
  source.files.forEach((f, k) => {
    let bytes = f.bytes;
    if (k === target) ({ bytes, kind } = mutate(f.bytes, rng));
    writeFileSync(join(dir, f.name), bytes);
  });
  return { path: join(dir, source.open), kind: `${source.name}, ${source.files[target].name}: ${kind}`, bomb: false };
}

/** Writes case `i` of `corpus` into `dir` and loads it. */
export async function runCase(corpus: FuzzCorpus, i: number, dir: string, rng: Rng): Promise<CaseResult> {
  const { path, kind, bomb } = prepareCase(corpus, i, dir, rng);
  const t0 = performance.now();
  try {
    await loadWeights(path);
    const ms = performance.now() - t0;
    return bomb ? { outcome: 'crash', kind, ms, message: `the bomb loaded` } : { outcome: 'loaded', kind, ms, message: '' };
  } catch (e) {
    const ms = performance.now() - t0;
    const message = e instanceof Error ? e.message : String(e);
    const good = isUserError(e) && !message.includes('\n') && message.startsWith(path);
    return {
      outcome: good ? 'user-error' : 'crash',
      kind,
      ms,
      message: good ? message : `${(e as Error)?.name}: ${message}\n${(e as Error)?.stack ?? ''}`,
    };
  }
}
