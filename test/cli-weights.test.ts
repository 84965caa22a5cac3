import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isUserError, type WeightSet } from '@nst/core';
import { CACHE_FILE_NAME, WeightsError, loadWeights, randomWeights, writeSafetensors } from '@nst/weights';
import { defineWeightsCommands } from '@nst/cli';
import { available, cliBuilt, jsonLines, newDir, nst as nstBuilt, repoRoot, writeTestImage } from '@nst/test-helpers';
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
  defineWeightsCommands(program.command('weights'));
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

/** The files users download, in the layouts test/fixtures reproduces with the real libraries. */
const fixtures = join(repoRoot, 'test', 'fixtures');
const keras1 = join(fixtures, 'keras1-vgg19-notop.h5.fixture');
const PTH_FORMATS = ['torch-zip', 'torch-pickle', 'torch-tar'].map((f) => join(fixtures, `${f}.pth.fixture`));

describe('nst weights import: the published layouts', () => {
  it('imports the Keras 1 release layout: all 16 convolutions read, conv1_1 .. conv5_1 stored', async () => {
    expect(await nst('import', keras1)).toEqual([
      `${join(process.env.NST_CACHE_DIR!, CACHE_FILE_NAME)}: 13 layers (conv1_1 .. conv5_1) from keras-h5 ${keras1} (caffe-bgr: BGR, 0..255, minus mean [103.939, 116.779, 123.68])`,
    ]);
  });

  for (const file of PTH_FORMATS)
    it(`imports ${file.split('/').pop()}`, async () => {
      expect(await nst('import', file, '--preprocessing', 'caffe-bgr')).toEqual([
        expect.stringMatching(/: 2 layers \(conv1_1 \.\. conv1_2\) from pth /),
      ]);
      const original = await loadWeights(file);
      const cached = await loadWeights(join(process.env.NST_CACHE_DIR!, CACHE_FILE_NAME));
      cached.layers.forEach((l, k) => expectSameArray(l.kernel, original.layers[k].kernel, `${l.name} kernel`));
    });

  it('never replaces real weights with random:SEED unless --force', async () => {
    const cache = join(process.env.NST_CACHE_DIR!, CACHE_FILE_NAME);
    await nst('import', PTH_FORMATS[0]);
    const err = await nst('import', 'random:1').catch((e: unknown) => e);
    expect(isUserError(err)).toBe(true);
    expect((err as Error).message).toBe(
      `weights import: ${cache} holds weights from ${PTH_FORMATS[0]}; random:1 is seeded random weights (for tests, not a stylisation): ` +
        'refusing to replace the cache; pass --force to replace it',
    );
    expect((await loadWeights(cache)).layers.length).toBe(2);
    expect(await nst('import', 'random:1', '--force')).toEqual([
      expect.stringMatching(/: 13 layers \(conv1_1 \.\. conv5_1\) from random random:1 /),
    ]);
    // Random over random needs nothing.
    expect(await nst('import', 'random:2')).toEqual([expect.stringMatching(/from random random:2 /)]);
  });
});

/** What the fixture scripts recorded: per file and layer, the SHA-256 of the values the real library read. */
function expectedHashes(): Record<string, { layers: Record<string, { kernel_sha256: string; bias_sha256: string }> }> {
  const files = (name: string) => JSON.parse(readFileSync(join(fixtures, name), 'utf8')).files;
  return { ...files('keras-h5.expected.json'), ...files('pth.expected.json') };
}

const sha256 = (a: Float32Array) =>
  createHash('sha256')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');

/** `set` as a safetensors file (HWIO, Keras-style names) with its preprocessing recorded. */
async function asSafetensors(set: WeightSet, path: string): Promise<string> {
  const tensors = set.layers.flatMap((l) => [
    { name: `${l.name}.kernel`, shape: [3, 3, l.inChannels, l.outChannels], data: l.kernel },
    { name: `${l.name}.bias`, shape: [l.outChannels], data: l.bias },
  ]);
  await writeSafetensors(path, tensors, { preprocessing: JSON.stringify(set.preprocessing) });
  return path;
}

describe.runIf(available(cliBuilt, 'packages/cli/dist is not built (run `npm run build`)'))(
  'a render with imported weights matches a render with the same values from safetensors, digit for digit',
  () => {
    const dir = newDir();
    const images = Promise.all([writeTestImage(join(dir, 'c.png'), 40, 32, 1), writeTestImage(join(dir, 's.png'), 40, 32, 2)]);
    const cases: Array<[string, string[]]> = [
      // The notebook's layers: content conv4_2, style conv1_1 .. conv5_1.
      [keras1, []],
      ...PTH_FORMATS.map((f): [string, string[]] => [f, ['--content-layers', 'conv1_2', '--style-layers', 'conv1_1,conv1_2']]),
    ];
    for (const [file, layers] of cases)
      it(file.split('/').pop()!, async () => {
        const [content, style] = await images;
        // The values nst reads are the ones the real library read (hash for hash), so the safetensors file holds them too.
        const set = await loadWeights(file);
        const want = expectedHashes()[file.split('/').pop()!].layers;
        for (const l of set.layers)
          expect([sha256(l.kernel), sha256(l.bias)]).toEqual([want[l.name].kernel_sha256, want[l.name].bias_sha256]);
        const safetensors = await asSafetensors(set, join(newDir(), 'same-values.safetensors'));
        const cache = newDir();
        expect(nstBuilt(['weights', 'import', file], { NST_CACHE_DIR: cache }).status).toBe(0);
        const job = (out: string) => ['render', '-c', content, '-s', style, '-o', out, '--size', '40x32', '-n', '3', '--seed', '3'];
        const flags = ['--save-every', '0', '--print-every', '1', '--json', '--verbose', ...layers];
        const imported = nstBuilt([...job(join(dir, 'imported.png')), ...flags], { NST_CACHE_DIR: cache, NST_WEIGHTS: '' });
        const direct = nstBuilt([...job(join(dir, 'direct.png')), ...flags, '--weights', safetensors], { NST_WEIGHTS: '' });
        expect(imported.status, imported.stderr).toBe(0);
        expect(direct.status, direct.stderr).toBe(0);
        expect(imported.stderr).toContain(`weights: ${join(cache, CACHE_FILE_NAME)} (safetensors, `);
        // Every iteration's J, J_content, J_style as full doubles (--json), and the final ones.
        const losses = (stdout: string) =>
          jsonLines(stdout).map(({ iteration, total, content, style, final }) => ({ iteration, total, content, style, final }));
        expect(losses(imported.stdout)).toHaveLength(5);
        expect(losses(imported.stdout)).toEqual(losses(direct.stdout));
        // The pixels (the files differ in the settings they record: the weights' source and digest).
        const pixels = (f: string) => sharp(join(dir, f)).raw().toBuffer();
        expect(await pixels('imported.png')).toEqual(await pixels('direct.png'));
      });
  },
);

describe.runIf(available(cliBuilt, 'packages/cli/dist is not built (run `npm run build`)'))(
  'the weights a user names, and no network',
  () => {
    it('an NST_WEIGHTS that names nothing: one line naming the variable and the path, exit 2', async () => {
      // Real inputs: a render checks them first, before the weights.
      const image = await writeTestImage(join(newDir(), 'a.png'), 16, 12, 1);
      const r = nstBuilt(['render', '-c', image, '-s', image, '-o', join(newDir(), 'o.png')], { NST_WEIGHTS: '/nonexistent/vgg19.h5' });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(
        'nst: NST_WEIGHTS=/nonexistent/vgg19.h5: no such file or folder (unset NST_WEIGHTS to use the installed weights)\n',
      );
    });

    it('nst weights fetch offline: says so in one line, then where to get the file by hand and how to install it; nothing larger is tried', () => {
      // A host name that never resolves (RFC 6761), as every host does without a network.
      const r = nstBuilt(['weights', 'fetch', '--fallback'], { NST_CACHE_DIR: newDir(), NST_WEIGHTS_MIRROR: 'http://nst-offline.invalid' });
      expect(r.status).toBe(2);
      const file = 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5';
      expect(r.stderr.split('\n')).toEqual([
        expect.stringMatching(/^nst: weights fetch: the network is unreachable \(nst-offline\.invalid: (ENOTFOUND|EAI_AGAIN)\)$/),
        `  download ${file} (80 MB, md5 253f8cb515780f3b799900260a226db6) by hand from https://storage.googleapis.com/tensorflow/keras-applications/vgg19/${file},`,
        `  then install it: nst weights import ${file}`,
        '',
      ]);
      expect(r.stdout).toBe('');
    });
  },
);
