/**
 * PyTorch's first serialization format (before 0.1.10, early 2017: the
 * Caffe-converted vgg19-d01eb7cb.pth of January 2017), a tar archive of four
 * members, as torch/serialization.py's legacy_load reads it:
 *  - "sys_info": a pickled dict (protocol_version 1000, little_endian, type sizes);
 *  - "storages": a pickled count, then per storage a pickled (key, location,
 *    storage type), an int64 element count and the raw data; then a pickled
 *    list of views (view key, root key, offset, element count);
 *  - "tensors": a pickled count, then per tensor a pickled (key, storage key,
 *    tensor type) and its metadata: int64 ndim, ndim int64 sizes, ndim int64
 *    strides, an int64 storage offset;
 *  - "pickle": the state dict, whose persistent ids are tensor keys (as text).
 * Keys are the saving process's C pointers: integers, kept here as decimal strings.
 * Only the counts, headers and metadata are read up front, each bounded by
 * its member's size; a storage's data is read when a VGG tensor needs it.
 */
import { check, checkInt, fail } from './errors.js';
import type { FileBytes } from './filebytes.js';
import { cachedByKey, PickleCursor, toFloat32, type OpenedPth } from './pth-file.js';
import { storageType, StorageRef, TensorRef, Tuple, type PickleValue } from './pickle.js';
import { readTarDirectory, type TarMember } from './tar.js';

const MEMBERS = ['sys_info', 'pickle', 'tensors', 'storages'] as const;
/** The pickled members other than "storages" hold no tensor data: a few KB for a state dict. */
const MAX_METADATA_MEMBER = 64 << 20;
/** Dimensions a tensor may have (a conv kernel has 4). */
const MAX_NDIM = 8;

interface StorageLocation {
  readonly offset: number;
  readonly numel: number;
  readonly dtype: string;
  readonly elementSize: number;
}

export async function openTarPth(file: FileBytes): Promise<OpenedPth> {
  const directory = await readTarDirectory(file);
  const member = (name: (typeof MEMBERS)[number]): TarMember => {
    const m = directory.get(name);
    check(m, `the tar archive has no "${name}" member: not a PyTorch file (torch's tar format has ${MEMBERS.join(', ')})`);
    return m;
  };
  const sysInfo = await cursorOver(file, member('sys_info')).pickle('sys_info');
  check(sysInfo instanceof Map && sysInfo.get('little_endian') === true, 'sys_info: only little-endian files are supported');

  const { roots, views } = await readStorages(file, member('storages'));
  const tensors = await readTensors(file, member('tensors'), roots, views);
  const main = member('pickle');
  check(
    main.size <= MAX_METADATA_MEMBER,
    `the pickle member is ${main.size} bytes, too large for a state dict`,
    'WEIGHTS_TOO_LARGE',
    'pickle',
  );
  const stateDict = await cursorOver(file, main).pickle('the state dict (member "pickle")', (pid, what) => {
    if (pid instanceof Tuple) fail(`${what} pickles a whole model (a module class), not a state dict: save model.state_dict() instead`);
    const tensor = tensors.get(decimalKey(pid, `${what}: a persistent id`));
    return tensor ?? fail(`${what} refers to tensor ${String(pid)}, which the "tensors" member does not list`);
  });
  return {
    stateDict,
    readStorage: cachedByKey(async (ref) => {
      const loc = roots.get(ref.key) ?? fail(`storage ${ref.key} is not in the "storages" member`);
      return toFloat32(await file.read(loc.offset, loc.numel * loc.elementSize, `storage ${ref.key}`), ref, file.budget);
    }),
  };
}

const end = (m: TarMember) => m.offset + m.size;
const cursorOver = (file: FileBytes, m: TarMember) => new PickleCursor(file, m.offset, end(m), `the ${m.name} member`);

/** An int or bigint key, or the text of one (the state dict's persistent ids), as a canonical decimal string. */
function decimalKey(v: PickleValue | undefined, what: string): string {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  check(typeof v === 'string' && /^-?\d{1,40}$/.test(v), `${what} is not an integer key`);
  return BigInt(v).toString();
}

/** Where each root storage's data lies, and each view's root and offset. */
async function readStorages(
  file: FileBytes,
  m: TarMember,
): Promise<{ roots: Map<string, StorageLocation>; views: Map<string, { root: string; offset: number }> }> {
  const cursor = cursorOver(file, m);
  // Each storage takes at least its 8-byte count and a pickled header.
  const count = checkInt(await cursor.pickle('the storage count'), 'the storage count', 0, Math.floor(m.size / 16));
  const roots = new Map<string, StorageLocation>();
  for (let k = 0; k < count; k++) {
    const [rawKey, , typeName] = await headerTuple(cursor, `the header of storage ${k}`, '(key, location, type)');
    const key = decimalKey(rawKey, `the key of storage ${k}`);
    const type = storageType(typeName) ?? fail(`storage ${key} has no known storage type`);
    const numel = (await cursor.bytes(8, `the size of storage ${key}`)).readBigInt64LE(0);
    check(
      numel >= 0n && numel * BigInt(type.elementSize) <= BigInt(cursor.left),
      () => `storage ${key} claims ${numel} elements, more than the "storages" member holds`,
      'WEIGHTS_TOO_LARGE',
      'storages',
    );
    check(!roots.has(key), `storage ${key} appears twice`);
    roots.set(key, { offset: cursor.pos, numel: Number(numel), ...type });
    cursor.pos += Number(numel) * type.elementSize;
  }
  const list = await cursor.pickle('the storage views');
  check(Array.isArray(list), 'the storage views are not a list');
  const views = new Map<string, { root: string; offset: number }>();
  for (const view of list) {
    check(view instanceof Tuple && view.items.length === 4, 'a storage view is not (view key, root key, offset, size)');
    const [viewKey, rootKey, offset, numel] = view.items;
    const rootName = decimalKey(rootKey, 'the root of a storage view');
    const root = roots.get(rootName);
    check(root, `a storage view refers to storage ${rootName}, which is not stored`);
    const at = checkInt(offset, 'a storage view offset');
    check(at + checkInt(numel, 'a storage view size') <= root.numel, `a storage view of ${rootName} runs past its end`);
    views.set(decimalKey(viewKey, 'a storage view key'), { root: rootName, offset: at });
  }
  return { roots, views };
}

/** The tensors by key, each pointing at its root storage (a view's offset added). */
async function readTensors(
  file: FileBytes,
  m: TarMember,
  roots: ReadonlyMap<string, StorageLocation>,
  views: ReadonlyMap<string, { root: string; offset: number }>,
): Promise<Map<string, TensorRef>> {
  check(m.size <= MAX_METADATA_MEMBER, `the tensors member is ${m.size} bytes, too large for a state dict`, 'WEIGHTS_TOO_LARGE', 'tensors');
  const cursor = cursorOver(file, m);
  // Each tensor takes at least a pickled header and 16 bytes of metadata.
  const count = checkInt(await cursor.pickle('the tensor count'), 'the tensor count', 0, Math.floor(m.size / 24));
  const tensors = new Map<string, TensorRef>();
  for (let k = 0; k < count; k++) {
    const [rawKey, rawStorage] = await headerTuple(cursor, `the header of tensor ${k}`, '(key, storage key, type)');
    const key = decimalKey(rawKey, `the key of tensor ${k}`);
    const storageKey = decimalKey(rawStorage, `the storage of tensor ${key}`);
    // ndim as int32 plus 4 unused bytes (old torch wrote it as 8), then sizes, strides and offset.
    const ndim = checkInt(
      (await cursor.bytes(8, `the metadata of tensor ${key}`)).readInt32LE(0),
      `the dimension count of tensor ${key}`,
      0,
      MAX_NDIM,
    );
    const meta = await cursor.bytes(8 * (2 * ndim + 1), `the metadata of tensor ${key}`);
    const int64 = (i: number, what: string) => checkInt(Number(meta.readBigInt64LE(8 * i)), `the ${what} of tensor ${key}`);
    const size = Array.from({ length: ndim }, (_, i) => int64(i, 'size'));
    const stride = Array.from({ length: ndim }, (_, i) => int64(ndim + i, 'stride'));
    const offset = int64(2 * ndim, 'storage offset');
    const view = views.get(storageKey);
    const rootKey = view?.root ?? storageKey;
    const root = roots.get(rootKey) ?? fail(`tensor ${key} refers to storage ${storageKey}, which is not stored`);
    const storage = new StorageRef(rootKey, root.dtype, root.elementSize, root.numel, view?.offset ?? 0);
    check(!tensors.has(key), `tensor ${key} appears twice`);
    tensors.set(key, new TensorRef(storage, offset, size, stride));
  }
  return tensors;
}

/** The next pickle, which must be a 3-tuple (a storage's or a tensor's header). */
async function headerTuple(cursor: PickleCursor, what: string, shape: string): Promise<PickleValue[]> {
  const header = await cursor.pickle(what);
  check(header instanceof Tuple && header.items.length === 3, `${what} is not ${shape}`);
  return header.items;
}
