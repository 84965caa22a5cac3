/**
 * What the three PyTorch serialization formats share once opened: the state
 * dict (tensors referring to storages) and a way to read a storage as
 * float32; and how each reads a pickle that sits somewhere in a large file.
 */
import type { MemoryBudget } from './budget.js';
import { bfloat16ToFloat, float32View, halfToFloat } from './bytes.js';
import { check, fail, FormatError } from './errors.js';
import type { FileBytes } from './filebytes.js';
import { unpickle, type PersistentLoad, type PickleValue, type StorageRef, type Unpickled } from './pickle.js';

export interface OpenedPth {
  readonly stateDict: PickleValue;
  /** The whole storage `ref.key` refers to, as float32. */
  readStorage(ref: StorageRef): Promise<Float32Array>;
}

/** Each storage is read and converted once, however many tensors share it. */
export function cachedByKey(read: (ref: StorageRef) => Promise<Float32Array>): (ref: StorageRef) => Promise<Float32Array> {
  const cache = new Map<string, Promise<Float32Array>>();
  return (ref) => {
    let p = cache.get(ref.key);
    if (!p) cache.set(ref.key, (p = read(ref)));
    return p;
  };
}

export function toFloat32(bytes: Buffer, ref: StorageRef, budget: MemoryBudget): Float32Array {
  check(bytes.length % ref.elementSize === 0, `storage ${ref.key} is not a whole number of ${ref.dtype} values`);
  const n = bytes.length / ref.elementSize;
  // A converted (or realigned) copy costs 4 bytes a value on top of the bytes read.
  if (ref.dtype !== 'float32' || bytes.byteOffset % 4 !== 0) budget.take(4 * n, `storage ${ref.key} as float32`);
  switch (ref.dtype) {
    case 'float32':
      return float32View(bytes);
    case 'float64':
      return Float32Array.from({ length: n }, (_, i) => bytes.readDoubleLE(8 * i));
    case 'float16':
      return Float32Array.from({ length: n }, (_, i) => halfToFloat(bytes.readUInt16LE(2 * i)));
    case 'bfloat16':
      return Float32Array.from({ length: n }, (_, i) => bfloat16ToFloat(bytes.readUInt16LE(2 * i)));
    default:
      fail(`storage ${ref.key} holds ${ref.dtype}, not floating-point weights`);
  }
}

/**
 * Windows a pickle is looked for in: a state dict's pickle takes a few KB, a
 * whole model's with thousands of tensors some MB; past 64 MiB it is not a
 * state dict.
 */
const PICKLE_WINDOWS = [64 << 10, 1 << 20, 64 << 20];

/**
 * Unpickles the pickle starting at byte `start` of the file, which must end
 * before `end`. The pickle's length is unknown until it is parsed, so it is
 * read from a small window first and from larger ones only if it runs past it.
 * `end` in the result is a file offset.
 */
async function unpickleFromFile(
  file: FileBytes,
  start: number,
  end: number,
  what: string,
  persistentLoad?: PersistentLoad,
): Promise<Unpickled> {
  for (const window of PICKLE_WINDOWS) {
    const length = Math.min(window, end - start);
    check(length > 0, `${what} is missing: the data ends at byte ${start}`);
    const bytes = await file.read(start, length, what);
    try {
      const parsed = unpickle(bytes, 0, what, persistentLoad);
      return { value: parsed.value, end: start + parsed.end };
    } catch (e) {
      // Only a pickle cut off by the window is worth a larger one.
      if (!(e instanceof FormatError) || length === end - start || window === PICKLE_WINDOWS.at(-1)) throw e;
    } finally {
      file.budget.release(length); // the values parsed are all that is kept
    }
  }
  return fail(`${what} could not be read`);
}

/**
 * Reads what lies one after another in [pos, end) of a file: pickles, and the
 * raw bytes between them (storage data, int64 metadata). `pos` is where the
 * next item begins.
 */
export class PickleCursor {
  constructor(
    private readonly file: FileBytes,
    public pos: number,
    private readonly end: number,
    /** What the range is, for messages ("the storages member"). */
    private readonly what: string,
  ) {}

  async pickle(what: string, persistentLoad?: PersistentLoad): Promise<PickleValue> {
    const r = await unpickleFromFile(this.file, this.pos, this.end, what, persistentLoad);
    this.pos = r.end;
    return r.value;
  }

  /** The next `length` bytes, which must lie inside the range. */
  async bytes(length: number, what: string): Promise<Buffer> {
    check(this.pos + length <= this.end, () => `${what} runs past the end of ${this.what}`);
    const b = await this.file.read(this.pos, length, what);
    this.pos += length;
    return b;
  }

  /** Bytes left before the end of the range. */
  get left(): number {
    return this.end - this.pos;
  }
}
