/**
 * Structural bombs: small files whose declared counts and sizes ask a naive
 * reader for gigabytes, hours or a stack overflow (huge dims, zero-field
 * structs, nested cells, zip bombs and overlapping entries, deep and wide
 * pickles, huge HDF5 dataspaces, safetensors offsets, TF.js shapes). Written
 * byte by byte from the formats' specifications, independently of the
 * readers. Each must fail fast with the readers' one-line user error; the
 * test suite runs each once, the fuzzer runs each and mutates them.
 */
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { VGG19_LAYERS } from '@nst/core';
import { referenceLayer } from './reference.js';
import { makeZip, statePickle, tarArchive, tarPth, tarPthMembers, zipPth, type TorchTensor } from './torchfile.js';

export interface Bomb {
  /** The reader it targets (the fuzz seed format it joins). */
  readonly format: string;
  readonly name: string;
  readonly files: ReadonlyArray<{ name: string; bytes: Buffer }>;
  /** The path to load, relative to the case folder. */
  readonly open: string;
  /** What the error must say. */
  readonly expect: RegExp;
}

const l0 = referenceLayer(0);

// ---- MAT level 5, raw elements (the writer in matfile.ts only writes valid arrays) ----
const MI = { INT8: 1, UINT32: 6, INT32: 5, SINGLE: 7, MATRIX: 14, COMPRESSED: 15 };
const MX = { CELL: 1, STRUCT: 2, SINGLE: 7 };

function el(type: number, data: Buffer, declared = data.length): Buffer {
  const tag = Buffer.alloc(8);
  tag.writeUInt32LE(type, 0);
  tag.writeUInt32LE(declared, 4);
  return Buffer.concat([tag, data, Buffer.alloc((8 - (data.length % 8)) % 8)]);
}
const i32 = (values: number[]) => {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeInt32LE(v, 4 * i));
  return b;
};
function arrayHead(cls: number, dims: number[], name: string): Buffer {
  const flags = Buffer.alloc(8);
  flags.writeUInt32LE(cls, 0);
  return Buffer.concat([el(MI.UINT32, flags), el(MI.INT32, i32(dims)), el(MI.INT8, Buffer.from(name, 'latin1'))]);
}
/** A struct array of `dims` with no fields at all: its elements take no bytes. */
const zeroFieldStruct = (dims: number[], name = '') =>
  el(MI.MATRIX, Buffer.concat([arrayHead(MX.STRUCT, dims, name), el(MI.INT32, i32([32])), el(MI.INT8, Buffer.alloc(0))]));
const cell = (dims: number[], items: Buffer[], name = '') => el(MI.MATRIX, Buffer.concat([arrayHead(MX.CELL, dims, name), ...items]));

function matHeader(): Buffer {
  const h = Buffer.alloc(128, 0x20);
  h.write('MATLAB 5.0 MAT-file, hostile', 0, 'latin1');
  h.fill(0, 116, 124);
  h.writeUInt16LE(0x0100, 124);
  h.write('IM', 126, 'latin1');
  return h;
}
/** v7's miCOMPRESSED element: a tag and the zlib stream, unpadded. */
function compressedEl(content: Buffer): Buffer {
  const z = deflateSync(content);
  return el(MI.COMPRESSED, z).subarray(0, 8 + z.length);
}
/** A MAT-file of raw variables (miMATRIX elements), each zlib-wrapped when `compressed`. */
function rawMat(variables: Buffer[], compressed: boolean): Buffer {
  return Buffer.concat([matHeader(), ...variables.map((v) => (compressed ? compressedEl(v) : v))]);
}

function matBombs(): Bomb[] {
  const out: Bomb[] = [];
  const add = (name: string, variables: Buffer[], expect: RegExp) => {
    for (const compressed of [false, true])
      out.push({
        format: compressed ? 'matconvnet-v7' : 'matconvnet-v6',
        name: `${name}${compressed ? ' (v7)' : ''}`,
        files: [{ name: 'w.mat', bytes: rawMat(variables, compressed) }],
        open: 'w.mat',
        expect,
      });
  };
  // One zero-field struct claiming 2^50 elements (the 248-byte class).
  add('zero-field struct of 2^50 elements', [cell([1, 1], [zeroFieldStruct([1 << 30, 1 << 20])], 'layers')], /claims \d+ elements/);
  add('zero-field struct of 2^50 elements in meta', [zeroFieldStruct([1 << 30, 1 << 20], 'meta')], /claims \d+ elements/);
  // Many zero-field structs, each within the bytes but together billions of elements.
  const many = Array.from({ length: 2000 }, () => zeroFieldStruct([100_000, 1]));
  add('2000 zero-field structs of 100,000 elements', [cell([1, many.length], many, 'layers')], /claims \d+ elements/);
  add('2000 zero-field structs of 100,000 elements in meta', [cell([1, many.length], many, 'meta')], /claims \d+ elements/);
  // Dims whose product is not a safe integer, and a list of 100,000 dims.
  add(
    'dims 2^31 x 2^31 x 2^31',
    [el(MI.MATRIX, Buffer.concat([arrayHead(MX.SINGLE, [0x7fffffff, 0x7fffffff, 0x7fffffff], 'meta'), el(MI.SINGLE, Buffer.alloc(8))]))],
    /too many elements/,
  );
  add(
    '100,000 dims',
    [el(MI.MATRIX, Buffer.concat([arrayHead(MX.SINGLE, new Array(100_000).fill(1), 'meta'), el(MI.SINGLE, Buffer.alloc(4))]))],
    /100000 dimensions/,
  );
  // Single arrays declaring far more data than the element holds.
  add(
    'single array of 2^40 values',
    [el(MI.MATRIX, Buffer.concat([arrayHead(MX.SINGLE, [1 << 20, 1 << 20], 'meta'), el(MI.SINGLE, Buffer.alloc(16))]))],
    /holds 16 bytes/,
  );
  // Cells nested 1,000 deep.
  let nested = el(MI.MATRIX, Buffer.alloc(0));
  for (let i = 0; i < 1000; i++) nested = cell([1, 1], [nested]);
  add('cells nested 1,000 deep', [cell([1, 1], [nested], 'meta')], /nested more than 32 deep/);
  // A cell claiming 2^31 elements in a few bytes.
  add('cell of 2^31 elements', [cell([0x7fffffff, 1], [], 'layers')], /truncated|claims/);
  // A layer element declaring 4 GB, then 64 MB of zeros (v7: a ~64 KB file).
  const zeros = Buffer.alloc(64 << 20);
  const bigLayer = Buffer.concat([arrayHead(MX.CELL, [1, 1], 'layers'), el(MI.MATRIX, Buffer.alloc(0), 0xffff0000)]);
  const declared = Buffer.concat([el(MI.MATRIX, bigLayer, 0xfffffff8).subarray(0, 8 + bigLayer.length), zeros]);
  out.push({
    format: 'matconvnet-v7',
    name: 'layer declaring 4 GB, 64 MB of zeros (v7)',
    files: [{ name: 'w.mat', bytes: Buffer.concat([matHeader(), compressedEl(declared)]) }],
    open: 'w.mat',
    expect: /truncated|inflates|past the|runs past/,
  });
  // A compressed variable that inflates past the size its own tag declares (256 KB declared, 64 MB of zeros).
  const liar = Buffer.concat([el(MI.MATRIX, Buffer.alloc(0), 256 << 10).subarray(0, 8), zeros]);
  out.push({
    format: 'matconvnet-v7',
    name: 'variable inflating past its declared size (v7)',
    files: [{ name: 'w.mat', bytes: Buffer.concat([matHeader(), compressedEl(liar)]) }],
    open: 'w.mat',
    expect: /inflates|holds element type|no array flags|runs past/,
  });
  return out;
}

// ---- zip (.pth) ----
function tensors(): TorchTensor[] {
  const oihw = new Float32Array(l0.kernel.length);
  return [
    { key: 'features.0.weight', storageKey: '0', data: oihw, offset: 0, size: [64, 3, 3, 3], stride: [27, 9, 3, 1] },
    { key: 'features.0.bias', storageKey: '1', data: l0.bias, offset: 0, size: [64], stride: [1] },
  ];
}

/**
 * makeZip's deflated zip of `files`, whose central directory also lists each
 * of `aliases` as a copy of the last file's record: entries sharing its bytes.
 */
function aliasedZip(files: Array<[string, Buffer]>, aliases: string[]): Buffer {
  const zip = makeZip(files, true);
  const eocd = Buffer.from(zip.subarray(zip.length - 22));
  const cdOffset = eocd.readUInt32LE(16);
  let last = cdOffset;
  for (let p = cdOffset, k = 0; k < files.length; k++, p += 46 + zip.readUInt16LE(p + 28)) last = p;
  const record = zip.subarray(last, last + 46);
  const copies = aliases.flatMap((n) => {
    const cd = Buffer.from(record);
    cd.writeUInt16LE(Buffer.byteLength(n), 28);
    return [cd, Buffer.from(n)];
  });
  const central = Buffer.concat([zip.subarray(cdOffset, zip.length - 22), ...copies]);
  eocd.writeUInt16LE(files.length + aliases.length, 8);
  eocd.writeUInt16LE(files.length + aliases.length, 10);
  eocd.writeUInt32LE(central.length, 12);
  return Buffer.concat([zip.subarray(0, cdOffset), central, eocd]);
}

/** A pickle: PROTO 2, `body`, STOP. */
const pickle = (...body: Buffer[]) => Buffer.concat([Buffer.from([0x80, 2]), ...body, Buffer.from([0x2e])]);
const repeat = (bytes: number[], n: number) => Buffer.alloc(bytes.length * n, Buffer.from(bytes));

function pthBombs(): Bomb[] {
  const out: Bomb[] = [];
  const zip = (name: string, bytes: Buffer, expect: RegExp, format = 'pth-zip') =>
    out.push({ format, name, files: [{ name: 'w.pth', bytes }], open: 'w.pth', expect });
  const withPickle = (name: string, pkl: Buffer, expect: RegExp) =>
    zip(
      `data.pkl: ${name}`,
      makeZip(
        [
          ['archive/data.pkl', pkl],
          ['archive/byteorder', Buffer.from('little')],
        ],
        false,
      ),
      expect,
    );
  // All 16 convs' 32 storages are one 64 MB stream of zeros (64 KB deflated): 2 GB if each were inflated.
  // (The storages' element counts are recorded as 0: only the pickle's bytes need them.)
  const convs = Array.from({ length: 32 }, (_, k): TorchTensor => {
    const { inChannels: I, outChannels: O } = VGG19_LAYERS[k >> 1];
    const index = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34][k >> 1];
    const kernel = k % 2 === 0;
    return {
      key: `features.${index}.${kernel ? 'weight' : 'bias'}`,
      storageKey: String(k),
      data: new Float32Array(0),
      offset: 0,
      size: kernel ? [O, I, 3, 3] : [O],
      stride: kernel ? [9 * I, 9, 3, 1] : [1],
    };
  });
  const storages = Array.from({ length: 31 }, (_, k) => `archive/data/${k + 1}`);
  zip(
    '32 storages sharing one 64 MB deflated stream',
    aliasedZip(
      [
        ['archive/data.pkl', statePickle(convs, false)],
        ['archive/data/0', Buffer.alloc(64 << 20)],
      ],
      storages,
    ),
    /share bytes/,
    'pth-zip-deflated',
  );
  // Distinct entries, each a plausible deflate ratio, together far past the file's size.
  const files: Array<[string, Buffer]> = [
    ['archive/data.pkl', statePickle(tensors(), false)],
    ['archive/byteorder', Buffer.from('little')],
  ];
  for (let i = 0; i < 40; i++) files.push([`archive/data/x${i}`, Buffer.alloc(1 << 20)]);
  zip('40 entries of 1 MB zeros (expansion ~1000x)', makeZip(files, true), /zip bomb/, 'pth-zip-deflated');
  // One entry declaring 4 GB from a few bytes.
  const liar = makeZip([['archive/data.pkl', statePickle(tensors(), false)]], true);
  const cd = liar.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  liar.writeUInt32LE(0xfffffff0, cd + 24);
  zip('entry declaring 4 GB', liar, /impossible compression ratio|zip bomb/, 'pth-zip-deflated');
  // An end record claiming 65,535 entries in a tiny central directory.
  const many = zipPth(tensors());
  many.writeUInt16LE(0xffff, many.length - 22 + 8);
  many.writeUInt16LE(0xfffe, many.length - 22 + 10);
  zip('end record claiming 65,534 entries', many, /claims 65534 entries/);
  // Pickles: deep, wide, long.
  withPickle('100,000 nested lists', pickle(repeat([0x5d], 100_000), repeat([0x61], 99_999)), /nested more than 64 deep/);
  withPickle(
    '10,000 nested tuples',
    pickle(repeat([0x28], 10_000), Buffer.from([0x4e]), repeat([0x74], 10_000)),
    /nested more than 64 deep|on the stack/,
  );
  withPickle(
    'a list of 1.1 million items',
    pickle(Buffer.from([0x5d, 0x28]), repeat([0x4e], 1_100_000), Buffer.from([0x65])),
    /more than 1000000 pickle opcodes/,
  );
  withPickle('1.1 million DUPs', pickle(Buffer.from([0x4e]), repeat([0x32], 1_100_000)), /more than 1000000 pickle opcodes/);
  withPickle(
    '1.1 million frames',
    pickle(repeat([0x95, 0, 0, 0, 0, 0, 0, 0, 0], 1_100_000), Buffer.from([0x4e])),
    /more than 1000000 pickle opcodes/,
  );
  withPickle(
    'a frame of 2^52 bytes',
    pickle(Buffer.from([0x95, 0, 0, 0, 0, 0, 0, 0x10, 0]), Buffer.from([0x4e])),
    /pickle frame .* runs past/,
  );
  withPickle(
    'a dict of 400,000 items',
    pickle(Buffer.from([0x7d, 0x28]), repeat([0x4a, 1, 2, 3, 4, 0x4e], 400_000), Buffer.from([0x75])),
    /not a state dict|holds|not a tensor/,
  );
  withPickle(
    '500,000 memo entries',
    pickle(Buffer.from([0x4e]), repeat([0x72, 0xff, 0xff, 0xff, 0x7f, 0x94], 500_000)),
    /more than 1000000 pickle opcodes|values on the stack/,
  );
  // Legacy: the state-dict pickle nested 100,000 deep.
  const magic = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
  const protocol = Buffer.from([0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]);
  const sys = pickle(Buffer.from([0x7d]), Buffer.from([0x8c, 13]), Buffer.from('little_endian'), Buffer.from([0x88, 0x73]));
  out.push({
    format: 'pth-legacy',
    name: 'legacy state dict nested 100,000 deep',
    files: [{ name: 'w.pth', bytes: Buffer.concat([magic, protocol, sys, pickle(repeat([0x5d], 100_000), repeat([0x61], 99_999))]) }],
    open: 'w.pth',
    expect: /nested more than 64 deep/,
  });
  out.push(...tarBombs());
  return out;
}

/** PyTorch's tar format: declared member sizes, storage sizes, counts and dimensions past what the file holds. */
function tarBombs(): Bomb[] {
  const tar = (name: string, bytes: Buffer, expect: RegExp): Bomb => ({
    format: 'pth-tar',
    name: `tar: ${name}`,
    files: [{ name: 'w.pth', bytes }],
    open: 'w.pth',
    expect,
  });
  /** The members with the size field of `member` replaced. */
  const withSizeField = (member: string, field: Buffer) =>
    tarArchive(tarPthMembers(tensors()).map((m) => (m.name === member ? { ...m, declaredSize: field } : m)));
  const base256 = Buffer.alloc(12);
  base256[0] = 0x80;
  base256.writeBigUInt64BE(1n << 62n, 4);
  const good = tarPth(tensors());
  const storagesAt = good.indexOf(Buffer.from('storages\0'));
  const pax = Buffer.from('29 size=99999999999999999999\n');
  return [
    tar(
      'the storages member declaring 8 GiB',
      withSizeField('storages', Buffer.from('77777777777\0')),
      /declares 8589934591 bytes, past the end of the file/,
    ),
    tar('a base-256 member size of 2^62', withSizeField('storages', base256), /declares 4611686018427387904 bytes/),
    tar(
      'a pax header declaring 10^20 bytes',
      tarArchive([{ name: 'PaxHeader', data: pax, type: 'x' }, ...tarPthMembers(tensors())]),
      /pax header .* malformed size/,
    ),
    tar(
      'a storage claiming 2^60 elements',
      tarPth(tensors(), { storageNumel: { '0': 1n << 60n } }),
      /storage 1000 claims 1152921504606846976 elements/,
    ),
    tar(
      'a storage count of 10^12',
      tarPth(tensors(), { storageCount: 1e12 }),
      /the storage count is 1000000000000, expected an integer in 0\.\./,
    ),
    tar(
      'a tensor count of 10^12',
      tarPth(tensors(), { tensorCount: 1e12 }),
      /the tensor count is 1000000000000, expected an integer in 0\.\./,
    ),
    tar('tensors of 2^31 - 1 dimensions', tarPth(tensors(), { ndim: 2n ** 31n - 1n }), /dimension count of tensor 1100 is 2147483647/),
    tar(
      'cut inside the storages member',
      good.subarray(0, storagesAt + 512 + 4000),
      /"storages" .* declares \d+ bytes, past the end of the file/,
    ),
    tar(
      '65 headers',
      tarArchive(Array.from({ length: 65 }, (_, k) => ({ name: `m${k}`, data: Buffer.alloc(0) }))),
      /more than 64 tar headers/,
    ),
  ];
}

// ---- safetensors ----
function safetensors(header: unknown, data: Buffer, headerLength?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}
function safetensorsBombs(): Bomb[] {
  const st = (name: string, bytes: Buffer, expect: RegExp): Bomb => ({
    format: 'safetensors',
    name,
    files: [{ name: 'w.safetensors', bytes }],
    open: 'w.safetensors',
    expect,
  });
  const kernel = (offsets: unknown[], shape: unknown[] = [3, 3, 3, 64]) => ({
    'conv1_1.kernel': { dtype: 'F32', shape, data_offsets: offsets },
  });
  return [
    st('header length 2^47', safetensors({}, Buffer.alloc(0), 1n << 47n), /header length \d+ is out of range/),
    st('header length past the file', safetensors({}, Buffer.alloc(0), 1n << 20n), /runs past the end/),
    st('data_offsets [0, 2^53]', safetensors(kernel([0, 2 ** 53]), Buffer.alloc(64)), /data end is/),
    st('data_offsets past the data', safetensors(kernel([0, 6912]), Buffer.alloc(64)), /data end is/),
    st('shape [2^31, 2^31, 2^31]', safetensors(kernel([0, 64], [2 ** 31, 2 ** 31, 2 ** 31]), Buffer.alloc(64)), /dimension is|needs/),
    st(
      'two tensors sharing bytes',
      safetensors({ ...kernel([0, 6912]), 'conv1_1.bias': { dtype: 'F32', shape: [1728], data_offsets: [0, 6912] } }, Buffer.alloc(6912)),
      /share bytes/,
    ),
    st(
      '100,000 tensors',
      safetensors(
        Object.fromEntries(
          Array.from({ length: 100_000 }, (_, i) => [`t${i}`, { dtype: 'F32', shape: [2 ** 20], data_offsets: [0, 4 << 20] }]),
        ),
        Buffer.alloc(64),
      ),
      /dimension is|data end is/,
    ),
  ];
}

// ---- TF.js ----
function tfjsBombs(): Bomb[] {
  const model = (weights: unknown[], shard = Buffer.alloc(64)): Bomb['files'] => [
    { name: 'model.json', bytes: Buffer.from(JSON.stringify({ weightsManifest: [{ paths: ['group1-shard1of1'], weights }] })) },
    { name: 'group1-shard1of1', bytes: shard },
  ];
  const tf = (name: string, files: Bomb['files'], expect: RegExp): Bomb => ({ format: 'tfjs-layers', name, files, open: '.', expect });
  const manyShards = [
    {
      name: 'model.json',
      bytes: Buffer.from(
        JSON.stringify({
          weightsManifest: [
            {
              paths: new Array(100_000).fill('group1-shard1of1'),
              weights: [{ name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], dtype: 'float32' }],
            },
          ],
        }),
      ),
    },
    { name: 'group1-shard1of1', bytes: Buffer.alloc(64) },
  ];
  return [
    tf('a group of 100,000 shards (one file named 100,000 times)', manyShards, /lists 100000 shards/),
    tf(
      'kernel shape [2^30, 2^30, 2^30]',
      model([{ name: 'block1_conv1/kernel', shape: [2 ** 30, 2 ** 30, 2 ** 30], dtype: 'float32' }]),
      /implausible shape/,
    ),
    tf(
      'fc1 of 2^38 float32 values before conv1_1, in a 64-byte shard',
      model([
        { name: 'fc1/kernel', shape: [2 ** 19, 2 ** 19], dtype: 'float32' },
        { name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], dtype: 'float32' },
      ]),
      /shards hold 64 bytes, fewer than/,
    ),
    tf(
      '100,000 weights of 1 GB each',
      model(
        Array.from({ length: 100_000 }, (_, i) => ({ name: `w${i}`, shape: [2 ** 28], dtype: 'float32' })).concat([
          { name: 'block1_conv1/kernel', shape: [3, 3, 3, 64], dtype: 'float32' },
        ]),
      ),
      /shards hold 64 bytes, fewer than/,
    ),
    tf(
      'uint8-quantised kernel of 2^36 values',
      model([
        { name: 'block1_conv1/kernel', shape: [2 ** 18, 2 ** 18], dtype: 'float32', quantization: { dtype: 'uint8', scale: 1, min: 0 } },
      ]),
      /conv1_1 kernel has shape \[262144, 262144\]/,
    ),
  ];
}

// ---- Keras HDF5 ----
/** HDF5 files made with h5wasm: a dataspace of ~10^12 elements (chunked, never written: the file stays small), a VGG-shaped kernel of strings. */
async function h5Bombs(scratch: string): Promise<Bomb[]> {
  const h5wasm = (await import('h5wasm/node')).default;
  await h5wasm.ready;
  const { readFileSync } = await import('node:fs');
  const make = (name: string, build: (f: InstanceType<typeof h5wasm.File>) => void): Buffer => {
    const path = `${scratch}/${name}.h5`;
    const f = new h5wasm.File(path, 'w');
    build(f);
    f.close();
    return readFileSync(path);
  };
  const huge = make('huge', (f) => {
    const inner = f.create_group('block1_conv1').create_group('block1_conv1');
    const ds = inner.create_dataset({
      name: 'kernel:0',
      data: new Float32Array(1728),
      shape: [3, 3, 3, 64],
      dtype: '<f',
      maxshape: [null, 3, 3, 64],
      chunks: [3, 3, 3, 64],
    });
    ds.resize([1_000_000_000, 3, 3, 64]);
    inner.create_dataset({ name: 'bias:0', data: l0.bias, shape: [64], dtype: '<f' });
    const fc = f.create_group('fc1').create_group('fc1');
    const big = fc.create_dataset({
      name: 'kernel:0',
      data: new Float32Array(16),
      shape: [16],
      dtype: '<f',
      maxshape: [null],
      chunks: [16],
    });
    big.resize([2 ** 40]);
  });
  const strings = make('strings', (f) => {
    const inner = f.create_group('block1_conv1').create_group('block1_conv1');
    inner.create_dataset({ name: 'kernel:0', data: new Array(1728).fill('x'.repeat(8)), shape: [3, 3, 3, 64] });
    inner.create_dataset({ name: 'bias:0', data: l0.bias, shape: [64], dtype: '<f' });
  });
  return [
    {
      format: 'keras-h5',
      name: 'kernel dataspace of 10^9 x 3 x 3 x 64, fc1 of 2^40',
      files: [{ name: 'w.h5', bytes: huge }],
      open: 'w.h5',
      expect: /conv1_1 kernel has shape \[1000000000, 3, 3, 64\]/,
    },
    {
      format: 'keras-h5',
      name: 'VGG-shaped kernel of strings',
      files: [{ name: 'w.h5', bytes: strings }],
      open: 'w.h5',
      expect: /not 32- or 64-bit floats/,
    },
  ];
}

/** Every bomb, for every reader. */
export async function allBombs(scratch: string): Promise<Bomb[]> {
  return [...matBombs(), ...pthBombs(), ...safetensorsBombs(), ...tfjsBombs(), ...(await h5Bombs(scratch))];
}

/** Writes `bomb`'s files into `dir`; returns the path to load. */
export function writeBomb(bomb: Bomb, dir: string): string {
  for (const f of bomb.files) writeFileSync(`${dir}/${f.name}`, f.bytes);
  return `${dir}/${bomb.open}`;
}
