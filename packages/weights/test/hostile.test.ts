/**
 * Hostile weight files, by class: declared sizes bounded before use (the
 * structural bombs of bombs.ts, each failing fast with a one-line error),
 * non-regular files refused before reading, absurd preprocessing values, an
 * unwritable cache folder. Every file is made by the test.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isUserError } from '@nst/core';
import { loadWeights, MEMORY_BUDGET_BYTES, randomWeights, WeightsError, writeCache, writeSafetensors } from '@nst/weights';
import { allBombs, writeBomb } from './bombs.js';
import { nst } from '@nst/test-helpers';
import { newDir } from './helpers.js';
import { matConvLayer, matFile, type MatValue } from './matfile.js';

const scratch = newDir();
const bombs = await allBombs(scratch);

/** Loads `path`; returns the error, which must be a one-line WeightsError naming the path. */
async function loadError(path: string): Promise<WeightsError> {
  const err = await loadWeights(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `${path} loaded`).toBeInstanceOf(WeightsError);
  const e = err as WeightsError;
  expect(isUserError(e)).toBe(true);
  expect(e.message.startsWith(path), e.message).toBe(true);
  expect(e.message).not.toContain('\n');
  expect(e.path).toBe(path);
  return e;
}

describe('declared counts and sizes are bounded before any allocation or loop', () => {
  for (const bomb of bombs)
    it(`${bomb.format}: ${bomb.name} fails fast with a clear error`, async () => {
      const dir = join(scratch, bomb.name.replace(/[^A-Za-z0-9]+/g, '-'));
      mkdirSync(dir, { recursive: true });
      const path = writeBomb(bomb, dir);
      const heapBefore = process.memoryUsage().heapUsed;
      // A bomb that is read rather than refused by its declared sizes hangs or runs out of memory (the test's timeout, the heap bound).
      const e = await loadError(path);
      expect(e.message).toMatch(bomb.expect);
      // No bomb may leave more than 256 MB of heap behind (the file's whole budget is 512 MiB, mostly outside the heap).
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(256 << 20);
    });
});

describe('FIFOs, devices and sockets are refused before anything is read', () => {
  /** A loaded copy of the TF.js model with `replace` (a path in the folder) swapped for a FIFO. */
  function tfjsFolderWith(fifo: string): string {
    const dir = newDir();
    const manifest = {
      weightsManifest: [
        { paths: ['group1-shard1of1'], weights: [{ name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], dtype: 'float32' }] },
      ],
    };
    if (fifo !== 'model.json') writeFileSync(join(dir, 'model.json'), JSON.stringify(manifest));
    execFileSync('mkfifo', [join(dir, fifo)]);
    return dir;
  }
  const cases: Array<[string, () => Promise<string>]> = [
    [
      'a FIFO given as the weight file',
      async () => {
        const p = join(newDir(), 'w.pth');
        execFileSync('mkfifo', [p]);
        return p;
      },
    ],
    ['a FIFO as a TF.js shard', async () => tfjsFolderWith('group1-shard1of1')],
    ['a FIFO as model.json', async () => tfjsFolderWith('model.json')],
    ['the character device /dev/zero', async () => '/dev/zero'],
    [
      'a symlink to /dev/zero',
      async () => {
        const p = join(newDir(), 'w.safetensors');
        symlinkSync('/dev/zero', p);
        return p;
      },
    ],
    [
      'a Unix socket',
      async () => {
        const p = join(newDir(), 'w.h5');
        const server = createServer();
        await new Promise<void>((resolve) => server.listen(p, resolve));
        server.unref();
        return p;
      },
    ],
  ];
  for (const [what, make] of cases)
    it(`${what}: a one-line error at once (no hang)`, async () => {
      const path = await make();
      // Opened without O_NONBLOCK, a FIFO with no writer would hang here until the test's timeout.
      const e = await loadError(path);
      expect(e.reason).toBe('WEIGHTS_NOT_REGULAR_FILE');
      expect(e.message).toMatch(/is a (FIFO \(named pipe\)|character device|socket), not a regular file/);
    });
});

describe('absurd preprocessing values are a user error naming the file and the field', () => {
  const good = { name: 'custom', channelOrder: 'rgb', scale: 255, mean: [120, 115, 100], std: [1, 1, 1] };
  const bad: Array<[string, unknown, string]> = [
    ['mean NaN (written as null)', { ...good, mean: [null, 1, 2] }, 'mean'],
    ['mean 1e30', { ...good, mean: [1e30, 1, 2] }, 'mean'],
    ['mean of 2 values', { ...good, mean: [1, 2] }, 'mean'],
    ['std 0', { ...good, std: [0, 1, 1] }, 'std'],
    ['std negative', { ...good, std: [-1, 1, 1] }, 'std'],
    ['scale 1e300', { ...good, scale: 1e300 }, 'scale'],
    ['scale "255"', { ...good, scale: '255' }, 'scale'],
    ['channelOrder gbr', { ...good, channelOrder: 'gbr' }, 'channelOrder'],
  ];
  const l0 = randomWeights(1).layers[0];
  for (const [what, pre, field] of bad)
    it(`safetensors metadata with ${what}`, async () => {
      const path = join(newDir(), 'w.safetensors');
      await writeSafetensors(
        path,
        [
          { name: 'conv1_1.kernel', shape: [3, 3, 3, 64], data: l0.kernel },
          { name: 'conv1_1.bias', shape: [64], data: l0.bias },
        ],
        { preprocessing: JSON.stringify(pre) },
      );
      const e = await loadError(path);
      expect(e.reason).toBe('WEIGHTS_BAD_PREPROCESSING');
      expect(e.entry).toBe(`__metadata__.preprocessing.${field}`);
      expect(e.message).toContain(`__metadata__.preprocessing: ${field} is`);
    });

  const averageImage: Array<[string, number[], RegExp]> = [
    ['NaN', [NaN, 1, 2], /not finite/],
    ['4 values', [1, 2, 3, 4], /holds 4 values, not 3 per channel/],
    ['1e30', [1e30, 1, 2], /mean is \[1(\.\d+)?e\+30,1,2\], expected 3 numbers in \[-255, 255\]/],
  ];
  for (const [what, values, message] of averageImage)
    it(`MatConvNet averageImage of ${what}`, async () => {
      const path = join(newDir(), 'w.mat');
      const conv = matConvLayer('conv1_1', l0.kernel, l0.bias, 3, 64);
      const meta: MatValue = {
        t: 'struct',
        fields: [
          ['normalization', { t: 'struct', fields: [['averageImage', { t: 'double', dims: [1, 1, values.length], data: values }]] }],
        ],
      };
      writeFileSync(
        path,
        matFile(
          [
            ['layers', { t: 'cell', dims: [1, 1], items: [conv] }],
            ['meta', meta],
          ],
          false,
        ),
      );
      const e = await loadError(path);
      expect(e.reason).toBe('WEIGHTS_BAD_PREPROCESSING');
      expect(e.entry).toMatch(/^meta\.normalization\.averageImage/);
      expect(e.message).toMatch(message);
    });

  it('exits with status 2 at the CLI', () => {
    const path = join(newDir(), 'w.safetensors');
    // (written synchronously below: the CLI runs in its own process)
    return writeSafetensors(
      path,
      [
        { name: 'conv1_1.kernel', shape: [3, 3, 3, 64], data: l0.kernel },
        { name: 'conv1_1.bias', shape: [64], data: l0.bias },
      ],
      { preprocessing: JSON.stringify({ ...good, mean: [1e30, 0, 0] }) },
    ).then(() => {
      const r = nst(['weights', 'info', path]);
      expect(r.status).toBe(2);
      expect(r.stderr.trim()).toMatch(new RegExp(`^nst: ${path}: .*__metadata__\\.preprocessing: mean is \\[1e\\+30,0,0\\]`));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    });
  });
});

describe('an unusable cache folder is a user error naming the path', () => {
  const set = randomWeights(2);
  it('NST_CACHE_DIR naming a file', async () => {
    const file = join(newDir(), 'not-a-folder');
    writeFileSync(file, 'x');
    const saved = process.env.NST_CACHE_DIR;
    process.env.NST_CACHE_DIR = file;
    try {
      const e = await writeCache(set).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(WeightsError);
      expect((e as WeightsError).reason).toBe('WEIGHTS_CACHE_UNWRITABLE');
      expect((e as WeightsError).entry).toBe('NST_CACHE_DIR');
      expect((e as Error).message).toBe(`cache folder ${file} (from NST_CACHE_DIR) is (or lies under) a file, not a folder`);
    } finally {
      if (saved === undefined) delete process.env.NST_CACHE_DIR;
      else process.env.NST_CACHE_DIR = saved;
    }
  });
  it('a cache path under a file', async () => {
    const file = join(newDir(), 'file');
    writeFileSync(file, 'x');
    const e = await writeCache(set, join(file, 'sub', 'cache.safetensors')).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect((e as WeightsError).reason).toBe('WEIGHTS_CACHE_UNWRITABLE');
    expect((e as Error).message).toBe(`cache folder ${join(file, 'sub')} is (or lies under) a file, not a folder`);
  });
  // (As root every folder is writable, so the permission case only runs as another user.)
  it.skipIf(process.getuid?.() === 0)('a read-only folder', async () => {
    const dir = newDir();
    execFileSync('chmod', ['555', dir]);
    const e = await writeCache(set, join(dir, 'cache.safetensors')).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect((e as WeightsError).reason).toBe('WEIGHTS_CACHE_UNWRITABLE');
    expect((e as Error).message).toMatch(new RegExp(`^cache folder ${dir} is not writable \\(EACCES\\)$`));
  });
});

describe('safetensors files past 2 GiB', () => {
  it('load by reading the header and only the VGG tensors (a sparse 2.5 GB file)', async () => {
    const l0 = randomWeights(4).layers[0];
    const size = 2_500_000_000;
    const kernelBytes = l0.kernel.byteLength;
    const biasEnd = kernelBytes + l0.bias.byteLength;
    const header = Buffer.from(
      JSON.stringify({
        'conv1_1.kernel': { dtype: 'F32', shape: [3, 3, 3, 64], data_offsets: [0, kernelBytes] },
        'conv1_1.bias': { dtype: 'F32', shape: [64], data_offsets: [kernelBytes, biasEnd] },
        'classifier.weight': { dtype: 'U8', shape: [size - biasEnd], data_offsets: [biasEnd, size] },
      }),
    );
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    const path = join(newDir(), 'big.safetensors');
    writeFileSync(path, Buffer.concat([length, header, Buffer.from(l0.kernel.buffer), Buffer.from(l0.bias.buffer)]));
    truncateSync(path, 8 + header.length + size); // the rest is a hole: no disk used
    expect(statSync(path).size).toBeGreaterThan(2 ** 31);
    const set = await loadWeights(path);
    expect(set.layers.map((l) => l.name)).toEqual(['conv1_1']);
    expect(set.layers[0].kernel).toEqual(l0.kernel);
    expect(set.layers[0].bias).toEqual(l0.bias);
  });
});

describe('a TF.js group larger than the memory budget', () => {
  it('loads: only the VGG weights are kept, the rest is streamed through the hash', async () => {
    const l0 = randomWeights(5).layers[0];
    const dir = newDir();
    const fc = 520 << 20; // one fully connected weight of 520 MB, after conv1_1, in a sparse second shard
    const weights = [
      { name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], dtype: 'float32' },
      { name: 'block1_conv1/bias', shape: [64], dtype: 'float32' },
      { name: 'fc1/kernel', shape: [fc / 4], dtype: 'float32' },
    ];
    writeFileSync(
      join(dir, 'model.json'),
      JSON.stringify({ weightsManifest: [{ paths: ['group1-shard1of2', 'group1-shard2of2'], weights }] }),
    );
    writeFileSync(join(dir, 'group1-shard1of2'), Buffer.concat([Buffer.from(l0.kernel.buffer), Buffer.from(l0.bias.buffer)]));
    writeFileSync(join(dir, 'group1-shard2of2'), '');
    truncateSync(join(dir, 'group1-shard2of2'), fc);
    expect(fc).toBeGreaterThan(MEMORY_BUDGET_BYTES);
    const set = await loadWeights(dir);
    expect(set.layers[0].kernel).toEqual(l0.kernel);
    expect(set.layers[0].bias).toEqual(l0.bias);
  });
});
