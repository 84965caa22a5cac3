/**
 * A restricted unpickler for PyTorch state dicts. Python's pickle is a small
 * stack machine whose GLOBAL/REDUCE opcodes import and call arbitrary
 * functions, so loading an untrusted .pth with pickle.load can run any code.
 * This one runs no code: it knows the handful of opcodes a state dict uses
 * (protocols 2-4, plus the text INT and LONG that Python 2's cPickle still
 * wrote for 64-bit integers) and an allow-list of globals, each
 * of which it interprets itself: OrderedDict builds a Map, the
 * _rebuild_tensor functions describe a tensor (storage, offset, size, stride),
 * the storage and tensor types only name a dtype. Any other global is refused
 * by name.
 * Every read is bounds-checked; the number of opcodes run (which bounds the
 * stack, the memo and every collection) and the nesting of collections are
 * capped, so a pickle built to exhaust memory or to nest without end fails
 * with an error naming the limit.
 */
import { ByteReader } from './bytes.js';
import { check, fail } from './errors.js';

export class Tuple {
  constructor(readonly items: PickleValue[]) {}
}
/** A class or function the pickle names (only allow-listed ones get this far). */
export class Global {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
/** A storage referenced by persistent id: its bytes live elsewhere (a zip entry, or after the pickles). */
export class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: string,
    readonly elementSize: number,
    /** Element count, when the id records it. */
    readonly numel: number | undefined,
    /** Element offset into the root storage (legacy view storages), else 0. */
    readonly viewOffset: number,
  ) {}
}
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Tuple
  | Global
  | StorageRef
  | TensorRef;

/** Storage classes a state dict may reference, with their element type and size. */
const STORAGE_TYPES: Record<string, [string, number]> = {
  FloatStorage: ['float32', 4],
  DoubleStorage: ['float64', 8],
  HalfStorage: ['float16', 2],
  BFloat16Storage: ['bfloat16', 2],
  LongStorage: ['int64', 8],
  IntStorage: ['int32', 4],
  ShortStorage: ['int16', 2],
  CharStorage: ['int8', 1],
  ByteStorage: ['uint8', 1],
  BoolStorage: ['bool', 1],
};

/** The storage type a pickle names (torch.FloatStorage), with its element type and size; undefined for anything else. */
export function storageType(g: PickleValue | undefined): { dtype: string; elementSize: number } | undefined {
  if (!(g instanceof Global) || g.module !== 'torch' || !Object.hasOwn(STORAGE_TYPES, g.name)) return undefined;
  const [dtype, elementSize] = STORAGE_TYPES[g.name];
  return { dtype, elementSize };
}

/**
 * Tensor types, which the tar format (PyTorch before 0.1.10) records beside
 * each tensor (torch.cuda.* for one saved from a GPU). Names only: they are
 * never called, and the storage's own type decides the dtype.
 */
const TENSOR_TYPES = Object.keys(STORAGE_TYPES).flatMap((s) => {
  const tensor = s.replace('Storage', 'Tensor');
  return [`torch.${tensor}`, `torch.cuda.${tensor}`];
});

const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_TYPES).map((s) => `torch.${s}`),
  ...TENSOR_TYPES,
]);

/**
 * Opcodes one pickle may run. A VGG-19 state dict runs ~1,000, a whole
 * model's state dict with thousands of tensors ~100,000; each opcode adds at
 * most one value, so this bounds memory to some tens of MB.
 */
export const MAX_PICKLE_OPS = 1_000_000;
/** Nesting of lists, tuples and dicts. A state dict nests 3 deep (dict, tensor args, size tuple). */
export const MAX_PICKLE_DEPTH = 64;

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

export interface Unpickled {
  readonly value: PickleValue;
  /** Offset just past the STOP opcode (legacy files hold several pickles in a row). */
  readonly end: number;
}

/**
 * What a persistent id (BINPERSID) stands for. torch.save's ids name storages
 * (the default, storageRef); the tar format's name tensors kept elsewhere.
 */
export type PersistentLoad = (pid: PickleValue, what: string) => PickleValue;

/** Unpickles one pickle starting at `start` of `bytes`. */
export function unpickle(bytes: Uint8Array, start = 0, what = 'the pickle', persistentLoad: PersistentLoad = storageRef): Unpickled {
  const r = new ByteReader(bytes, what);
  const stack: StackItem[] = [];
  const memo = new Map<number, PickleValue>();
  let p = start;
  let ops = 0;
  // How deep each collection nests, as built (a collection filled after it was nested is under-counted, never over).
  const depths = new WeakMap<object, number>();
  const depthOf = (v: PickleValue): number => (v !== null && typeof v === 'object' ? (depths.get(v) ?? 0) : 0);
  /** Records that `container` now holds `items`, failing past MAX_PICKLE_DEPTH. */
  const nest = (container: object, items: readonly PickleValue[]): void => {
    let d = depths.get(container) ?? 1;
    for (const v of items) d = Math.max(d, depthOf(v) + 1);
    check(d <= MAX_PICKLE_DEPTH, `${what}: collections nested more than ${MAX_PICKLE_DEPTH} deep at byte ${p}`, 'WEIGHTS_TOO_LARGE', what);
    depths.set(container, d);
  };
  const tuple = (items: PickleValue[]): Tuple => {
    const t = new Tuple(items);
    nest(t, items);
    return t;
  };

  const pop = (): PickleValue => {
    check(stack.length > 0, `${what}: stack underflow at byte ${p}`);
    const v = stack.pop()!;
    check(v !== MARK, `${what}: unexpected mark at byte ${p}`);
    return v;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    check(stack.length > 0 && v !== MARK, `${what}: empty stack at byte ${p}`);
    return v as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    const i = stack.lastIndexOf(MARK);
    check(i >= 0, `${what}: no mark on the stack at byte ${p}`);
    const items = stack.splice(i) as PickleValue[];
    items.shift();
    return items;
  };
  const line = (): string => {
    let end = p;
    while (end < r.length && bytes[end] !== 0x0a) end++;
    check(end < r.length, `${what}: unterminated text at byte ${p}`);
    const s = r.ascii(p, end - p);
    p = end + 1;
    return s;
  };
  const setItems = (dict: PickleValue, items: PickleValue[]): void => {
    check(dict instanceof Map, `${what}: SETITEM(S) on something that is not a dict at byte ${p}`);
    check(items.length % 2 === 0, `${what}: odd number of items for SETITEMS at byte ${p}`);
    for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
    nest(dict, items);
  };

  for (;;) {
    check(
      ++ops <= MAX_PICKLE_OPS,
      () => `${what}: more than ${MAX_PICKLE_OPS} pickle opcodes (at byte ${p}); not a state dict`,
      'WEIGHTS_TOO_LARGE',
      what,
    );
    const op = r.u8(p);
    const at = p;
    p += 1;
    switch (op) {
      case 0x80: // PROTO
        check(r.u8(p) <= 5, `${what}: pickle protocol ${r.u8(p)} is not supported`);
        p += 1;
        break;
      case 0x95: {
        // FRAME: a length hint only, but one that must fit in the bytes left
        const length = r.u64(p, 'frame length');
        p += 8;
        r.need(p, length, 'a pickle frame');
        break;
      }
      case 0x2e: // STOP
        check(stack.length === 1, `${what}: ${stack.length} values on the stack at STOP`);
        return { value: pop(), end: p };
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(r.i32(p));
        p += 4;
        break;
      case 0x4b: // BININT1
        stack.push(r.u8(p));
        p += 1;
        break;
      case 0x4d: // BININT2
        stack.push(r.u16(p));
        p += 2;
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        const n = r.u8(p);
        stack.push(decodeLong(r.slice(p + 1, n)));
        p += 1 + n;
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        r.need(p, 8);
        stack.push(r.view.getFloat64(p, false));
        p += 8;
        break;
      case 0x58: // BINUNICODE
      case 0x8c: {
        // SHORT_BINUNICODE
        const n = op === 0x58 ? r.u32(p) : r.u8(p);
        p += op === 0x58 ? 4 : 1;
        stack.push(r.utf8(p, n));
        p += n;
        break;
      }
      case 0x54: // BINSTRING
      case 0x55: {
        // SHORT_BINSTRING
        const n = op === 0x54 ? r.i32(p) : r.u8(p);
        p += op === 0x54 ? 4 : 1;
        stack.push(r.ascii(p, n));
        p += n;
        break;
      }
      case 0x42: // BINBYTES
      case 0x43: {
        // SHORT_BINBYTES
        const n = op === 0x42 ? r.u32(p) : r.u8(p);
        p += op === 0x42 ? 4 : 1;
        stack.push(r.slice(p, n));
        p += n;
        break;
      }
      case 0x29: // EMPTY_TUPLE
        stack.push(new Tuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84;
        const items: PickleValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(tuple(items));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        check(Array.isArray(list), `${what}: APPEND to something that is not a list at byte ${at}`);
        list.push(v);
        nest(list, [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        check(Array.isArray(list), `${what}: APPENDS to something that is not a list at byte ${at}`);
        for (const v of items) list.push(v); // (not push(...items): a long spread overflows the call stack)
        nest(list, items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(allowGlobal(module, name, what));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        check(typeof module === 'string' && typeof name === 'string', `${what}: STACK_GLOBAL without two strings at byte ${at}`);
        stack.push(allowGlobal(module, name, what));
        break;
      }
      case 0x52: {
        // REDUCE: callable(*args), for allow-listed callables only
        const args = pop();
        const fn = pop();
        check(fn instanceof Global && args instanceof Tuple, `${what}: REDUCE without a known callable and a tuple at byte ${at}`);
        stack.push(callGlobal(fn, args.items, what));
        break;
      }
      case 0x62: {
        // BUILD: setting state. Only an OrderedDict's attributes (the state dict's _metadata) are accepted, and ignored.
        pop();
        check(top() instanceof Map, `${what}: BUILD on something other than a dict at byte ${at}`);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop(), what));
        break;
      case 0x49: // INT: decimal text (Python 2 wrote 64-bit ints so); "00" and "01" are False and True
      case 0x4c: {
        // LONG: decimal text ending in "L"
        const text = line();
        if (op === 0x49 && (text === '00' || text === '01')) stack.push(text === '01');
        else stack.push(decimalInteger(op === 0x4c ? text.replace(/L$/, '') : text, what, at));
        break;
      }
      case 0x71: // BINPUT
        memo.set(r.u8(p), top());
        p += 1;
        break;
      case 0x72: // LONG_BINPUT
        memo.set(r.u32(p), top());
        p += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const key = op === 0x68 ? r.u8(p) : r.u32(p);
        p += op === 0x68 ? 1 : 4;
        check(memo.has(key), `${what}: memo entry ${key} is missing at byte ${at}`);
        stack.push(memo.get(key)!);
        break;
      }
      default:
        fail(`${what}: pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at} is not one a state dict of tensors uses`);
    }
  }
}

/** A decimal integer of a text opcode: a number when safe, else a bigint; at most 40 digits. */
function decimalInteger(text: string, what: string, at: number): number | bigint {
  check(/^[-+]?\d{1,40}$/.test(text), `${what}: the integer at byte ${at} is not a decimal number`);
  const v = BigInt(text);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function allowGlobal(module: string, name: string, what: string): Global {
  const g = new Global(module, name);
  if (!ALLOWED_GLOBALS.has(g.qualified)) {
    const hint = module.startsWith('torch.nn') ? ' (the file pickles a whole model: save model.state_dict() instead)' : '';
    fail(`${what} refers to ${g.qualified}, which a state dict of tensors does not need; refusing to load it${hint}`);
  }
  return g;
}

function callGlobal(fn: Global, args: PickleValue[], what: string): PickleValue {
  switch (fn.qualified) {
    case 'collections.OrderedDict':
      return orderedDict(args, what);
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2': {
      // (storage, storage_offset, size, stride, [requires_grad, backward_hooks, metadata])
      const [storage, offset, size, stride] = args;
      check(storage instanceof StorageRef, `${what}: a tensor without a storage`);
      check(typeof offset === 'number' && offset >= 0, `${what}: a tensor with a bad storage offset`);
      return new TensorRef(storage, offset, intTuple(size, what), intTuple(stride, what));
    }
    case 'torch._utils._rebuild_parameter': {
      const [tensor] = args;
      check(tensor instanceof TensorRef, `${what}: a parameter without a tensor`);
      return tensor;
    }
    default:
      fail(`${what}: ${fn.qualified} cannot be called`);
  }
}

/**
 * OrderedDict(): Python 3 pickles the items after the call (SETITEMS);
 * Python 2 passed them as its one argument, a list of [key, value] pairs.
 */
function orderedDict(args: PickleValue[], what: string): Map<PickleValue, PickleValue> {
  const map = new Map<PickleValue, PickleValue>();
  if (args.length === 0) return map;
  const [items] = args;
  check(args.length === 1 && Array.isArray(items), `${what}: OrderedDict called with something other than a list of pairs`);
  for (const pair of items) {
    const kv = pair instanceof Tuple ? pair.items : pair;
    check(Array.isArray(kv) && kv.length === 2, `${what}: an OrderedDict item is not a (key, value) pair`);
    map.set(kv[0], kv[1]);
  }
  return map;
}

function intTuple(v: PickleValue | undefined, what: string): number[] {
  check(v instanceof Tuple && v.items.length <= 8, `${what}: a tensor size or stride is not a tuple`);
  return v.items.map((x) => {
    check(typeof x === 'number' && Number.isSafeInteger(x) && x >= 0, `${what}: a tensor size or stride holds ${String(x)}`);
    return x;
  });
}

/**
 * torch.save's persistent ids: ('storage', StorageType, key, location, numel)
 * in zip files; legacy files add view_metadata (view_key, offset, size) or None.
 */
function storageRef(pid: PickleValue, what: string): StorageRef {
  check(pid instanceof Tuple && pid.items[0] === 'storage' && pid.items.length >= 5, `${what}: unknown persistent id`);
  const [, type, key, , numel, view] = pid.items;
  const known = storageType(type);
  check(known, `${what}: storage without a known storage type`);
  const { dtype, elementSize: size } = known;
  check(typeof key === 'string', `${what}: storage key is not a string`);
  check(typeof numel === 'number' && Number.isSafeInteger(numel) && numel >= 0, `${what}: storage ${key} has a bad size`);
  // A legacy view (view_key, offset, size) of root storage `key` starts `offset` elements in.
  let viewOffset = 0;
  if (view instanceof Tuple) {
    const offset = view.items[1];
    check(typeof offset === 'number' && Number.isSafeInteger(offset) && offset >= 0, `${what}: storage view of ${key} has a bad offset`);
    viewOffset = offset;
  }
  return new StorageRef(key, dtype, size, numel, viewOffset);
}
