/**
 * PyTorch state dicts (.pth), in each format torch.save has written:
 *  - zip (PyTorch >= 1.6): <name>/data.pkl is the pickled state dict, whose
 *    tensors refer by persistent id to storages stored as <name>/data/<key>;
 *  - the pickle stream (0.1.10 to 1.5, such as torchvision's 2017
 *    vgg19-dcbb9e9d.pth): five pickles in a row (magic number, protocol 1001,
 *    system info, the state dict, the sorted storage keys), then each storage
 *    as an int64 element count followed by its raw little-endian data;
 *  - tar (before 0.1.10, such as the Caffe conversion vgg19-d01eb7cb.pth of
 *    January 2017): see pth-tar.ts.
 * Only the pickles and the storages of conv1_1 .. conv5_4 are read; the
 * classifier's 400+ MB are skipped. Kernels are (out, in, 3, 3) with the
 * tensor's own strides, gathered into HWIO.
 */
import { basename } from 'node:path';
import { PREPROCESSING, type Preprocessing } from '@nst/core';
import { check, fail } from './errors.js';
import { FileBytes, withFile } from './filebytes.js';
import { checkShape, gatherHWIO, layerShape, parseTorchName, type RawConv } from './layers.js';
import { TensorRef, unpickle, type PickleValue } from './pickle.js';
import { cachedByKey, PickleCursor, toFloat32, type OpenedPth } from './pth-file.js';
import { openTarPth } from './pth-tar.js';
import { hasMagic, registerFormat, type LoadedFile, type LoadOptions, type Probe } from './registry.js';
import { isTar } from './tar.js';
import { completeConvs } from './tfjs.js';
import { sha256File } from './cache.js';
import { readZipDirectory, readZipEntry } from './zip.js';

/** PROTO 2, then LONG1 of 10 bytes: torch's legacy magic number 0x1950a86a20f9469cfc6c. */
const STREAM_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

export async function loadPth(probe: Probe, options: LoadOptions): Promise<LoadedFile> {
  const convs = await withFile(
    probe.path,
    async (file) => {
      const pth = hasMagic(probe.head, 'PK\x03\x04')
        ? await openZipPth(file)
        : isTar(probe.head)
          ? await openTarPth(file)
          : await openStreamPth(file);
      return readConvs(stateDictOf(pth.stateDict), pth);
    },
    probe.budget,
  );
  const sha256 = await sha256File(probe.path);
  const { preprocessing, reason } = detectTorchPreprocessing(probe.path, sha256, convs.get('conv1_1'));
  if (options.verbose) (options.log ?? console.error)(`${probe.path}: preprocessing ${preprocessing.name} (${reason})`);
  return { convs, preprocessing, sha256, details: { 'preprocessing detected by': reason } };
}

/** The state dict itself, or the one a training checkpoint keeps under "state_dict" / "model". */
function stateDictOf(value: PickleValue): Map<PickleValue, PickleValue> {
  check(value instanceof Map, `the pickle holds ${describe(value)}, not a state dict`);
  for (const key of ['state_dict', 'model']) {
    const inner = value.get(key);
    if (inner instanceof Map) return inner;
  }
  return value;
}

async function readConvs(dict: Map<PickleValue, PickleValue>, pth: OpenedPth): Promise<Map<string, RawConv>> {
  const partial = new Map<string, { kernel?: Float32Array; bias?: Float32Array }>();
  for (const [key, value] of dict) {
    const param = typeof key === 'string' ? parseTorchName(key) : undefined;
    if (!param) continue;
    check(value instanceof TensorRef, `${key} is ${describe(value)}, not a tensor`);
    const { inChannels: I, outChannels: O } = layerShape(param.conv);
    checkShape(param.conv, param.kind, value.size, param.kind === 'kernel' ? [O, I, 3, 3] : [O]);
    const storage = await pth.readStorage(value.storage);
    const start = value.storage.viewOffset + value.offset;
    const entry = partial.get(param.conv) ?? {};
    if (param.kind === 'kernel') {
      const [so, si, sh, sw] = value.stride;
      entry.kernel = gatherHWIO(storage, start, [sh, sw, si, so], I, O);
    } else {
      const stride = value.stride[0];
      check(start + (O - 1) * stride < storage.length, `${key} runs past the end of its storage`);
      entry.bias = Float32Array.from({ length: O }, (_, o) => storage[start + o * stride]);
    }
    partial.set(param.conv, entry);
  }
  return completeConvs(partial);
}

async function openZipPth(file: FileBytes): Promise<OpenedPth> {
  const entries = await readZipDirectory(file);
  const pkl = [...entries.keys()].find((n) => n === 'data.pkl' || /^[^/]+\/data\.pkl$/.test(n));
  check(pkl, 'the zip holds no data.pkl: not a PyTorch file');
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder) check((await readZipEntry(file, byteorder)).toString('latin1') === 'little', 'big-endian tensors are not supported');
  const { value } = unpickle(await readZipEntry(file, entries.get(pkl)!), 0, 'data.pkl');
  return {
    stateDict: value,
    readStorage: cachedByKey(async (ref) => {
      const entry = entries.get(`${prefix}data/${ref.key}`);
      check(entry, `storage ${ref.key} is missing from the zip`);
      check(
        ref.numel === undefined || entry.size >= ref.numel * ref.elementSize,
        `storage ${ref.key} holds ${entry.size} bytes, fewer than its ${ref.numel} elements need`,
      );
      return toFloat32(await readZipEntry(file, entry), ref, file.budget);
    }),
  };
}

/** The pickle stream: five pickles, then the storages in the order of the key list. */
async function openStreamPth(file: FileBytes): Promise<OpenedPth> {
  const cursor = new PickleCursor(file, 0, file.size, 'the file');
  check((await cursor.pickle('the magic number')) === 0x1950a86a20f9469cfc6cn, 'not a PyTorch file (wrong magic number)');
  const protocol = await cursor.pickle('the protocol version');
  check(protocol === 1001, `unsupported legacy protocol version ${String(protocol)}`);
  const sysInfo = await cursor.pickle('the system info');
  check(sysInfo instanceof Map && sysInfo.get('little_endian') === true, 'only little-endian files are supported');
  const stateDict = await cursor.pickle('the state dict');
  const keys = await cursor.pickle('the storage keys');
  check(Array.isArray(keys) && keys.every((k) => typeof k === 'string'), 'the storage key list is not a list of strings');
  // Storage k sits after storages 0..k-1, each an int64 element count and the data.
  const elementSize = new Map<string, number>();
  if (stateDict instanceof Map)
    for (const v of stateDict.values()) if (v instanceof TensorRef) elementSize.set(v.storage.key, v.storage.elementSize);
  const location = new Map<string, { offset: number; numel: number }>();
  for (const key of keys as string[]) {
    const numel = (await cursor.bytes(8, `the size of storage ${key}`)).readBigInt64LE(0);
    const size = elementSize.get(key) ?? fail(`storage ${key} is not used by any tensor`);
    check(numel >= 0n && numel * BigInt(size) <= BigInt(cursor.left), `storage ${key} claims ${numel} elements, more than the file holds`);
    location.set(key, { offset: cursor.pos, numel: Number(numel) });
    cursor.pos += Number(numel) * size;
  }
  return {
    stateDict,
    readStorage: cachedByKey(async (ref) => {
      const loc = location.get(ref.key) ?? fail(`storage ${ref.key} is not in the file's storage list`);
      return toFloat32(await file.read(loc.offset, loc.numel * ref.elementSize, `storage ${ref.key}`), ref, file.budget);
    }),
  };
}

/**
 * The Caffe VGG-19's conv1_1, as two numbers that survive any re-layout
 * (OIHW/HWIO, BGR/RGB, spatial flips): the kernel's L2 norm and the sum of
 * its biases, measured on the Keras release of the same weights (the real
 * set in ../shared: 7.955915, 29.940525). torchvision's VGG-19 was trained
 * separately, with different inputs, and cannot match both to 4 digits.
 */
export const CAFFE_CONV1_1 = { kernelNorm: 7.955915, biasSum: 29.940525 };

export function isCaffeConv1_1(conv: RawConv | undefined): boolean {
  if (!conv) return false;
  let ss = 0;
  for (const v of conv.kernel) ss += v * v;
  const biasSum = conv.bias.reduce((a, b) => a + b, 0);
  return (
    Math.abs(Math.sqrt(ss) - CAFFE_CONV1_1.kernelNorm) < 1e-4 * CAFFE_CONV1_1.kernelNorm && Math.abs(biasSum - CAFFE_CONV1_1.biasSum) < 1e-3
  );
}

/**
 * torchvision's set wants RGB in 0..1 normalised by ImageNet mean/std; the
 * Caffe-converted set (neural-style-pt's vgg19-d01eb7cb.pth) wants Caffe's BGR
 * 0..255 minus the mean pixel. Told apart by, in order: the published hash
 * prefix (torchvision names files <name>-<first 8 hex of sha256>.pth), the
 * Caffe conv1_1 fingerprint, the hash prefix in the file name (neural-style-pt
 * re-saves the file, changing its hash but not its name); otherwise torchvision.
 */
export function detectTorchPreprocessing(
  path: string,
  sha256: string,
  conv1_1: RawConv | undefined,
): { preprocessing: Preprocessing; reason: string } {
  if (sha256.startsWith('dcbb9e9d'))
    return { preprocessing: PREPROCESSING.torchvision, reason: "sha256 matches torchvision's vgg19-dcbb9e9d.pth" };
  if (sha256.startsWith('d01eb7cb'))
    return { preprocessing: PREPROCESSING.caffeBgr, reason: 'sha256 matches the Caffe-converted vgg19-d01eb7cb.pth' };
  if (isCaffeConv1_1(conv1_1)) return { preprocessing: PREPROCESSING.caffeBgr, reason: "conv1_1 matches the Caffe VGG-19's first layer" };
  const name = basename(path);
  if (name.includes('d01eb7cb')) return { preprocessing: PREPROCESSING.caffeBgr, reason: 'file name vgg19-d01eb7cb (Caffe-converted)' };
  if (name.includes('dcbb9e9d')) return { preprocessing: PREPROCESSING.torchvision, reason: 'file name vgg19-dcbb9e9d (torchvision)' };
  return { preprocessing: PREPROCESSING.torchvision, reason: 'origin unknown: assuming torchvision; override with --preprocessing' };
}

function describe(v: PickleValue | undefined): string {
  if (v === null || v === undefined) return 'None';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Map) return 'a dict';
  if (v instanceof TensorRef) return 'a tensor';
  return `a ${typeof v === 'object' ? v.constructor.name : typeof v}`;
}

registerFormat({
  name: 'pth',
  description: 'PyTorch state dict (.pth)',
  detect: (p) => !p.isDirectory && (hasMagic(p.head, 'PK\x03\x04') || hasMagic(p.head, STREAM_MAGIC) || isTar(p.head)),
  load: loadPth,
});
