/**
 * Test-side writers of PyTorch files, byte by byte as torch.save produces
 * them (pickle protocol 2; the zip layout of PyTorch >= 1.6 and the legacy
 * stream), written from the pickle and zip specifications independently of
 * the reader under test.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export interface TorchTensor {
  key: string; // state-dict key
  storageKey: string;
  data: Float32Array; // the whole storage
  offset: number;
  size: number[];
  stride: number[];
}

class Pickler {
  private parts: Buffer[] = [];
  private memo = new Map<string, number>();
  op(...bytes: number[]) {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.parts.push(Buffer.from([0x58]), len, b); // BINUNICODE
    return this;
  }
  int(n: number) {
    if (n < 256) return this.op(0x4b, n); // BININT1
    if (n < 65536) return this.op(0x4d, n & 255, n >> 8); // BININT2
    if (n > 0x7fffffff) {
      const b = Buffer.alloc(10);
      b[0] = 0x8a; // LONG1 of 8 bytes
      b[1] = 8;
      b.writeBigInt64LE(BigInt(n), 2);
      this.parts.push(b);
      return this;
    }
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(n, 1); // BININT
    this.parts.push(b);
    return this;
  }
  /** GLOBAL, memoised like Python's pickler: the second use is a BINGET. */
  global(module: string, name: string) {
    const id = `${module}.${name}`;
    const m = this.memo.get(id);
    if (m !== undefined) return this.op(0x68, m); // BINGET
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1'));
    this.memo.set(id, this.memo.size);
    return this.op(0x71, this.memo.size - 1); // BINPUT
  }
  tuple(items: number[]) {
    this.op(0x28); // MARK
    items.forEach((i) => this.int(i));
    return this.op(0x74); // TUPLE
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** The pickle of an OrderedDict state dict with a _metadata attribute, as torch.save writes it. */
export function statePickle(tensors: TorchTensor[], legacy: boolean, extraGlobal?: [string, string]): Buffer {
  const p = new Pickler();
  p.op(0x80, 2); // PROTO 2
  p.global('collections', 'OrderedDict').op(0x29, 0x52); // EMPTY_TUPLE REDUCE
  p.op(0x28); // MARK for SETITEMS
  for (const t of tensors) {
    p.str(t.key);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28); // MARK (args tuple)
    // persistent id ('storage', torch.FloatStorage, key, 'cpu', numel[, None])
    p.op(0x28).str('storage').global('torch', 'FloatStorage').str(t.storageKey).str('cpu').int(t.data.length);
    if (legacy) p.op(0x4e); // view_metadata None
    p.op(0x74, 0x51); // TUPLE BINPERSID
    p.int(t.offset).tuple(t.size).tuple(t.stride);
    p.op(0x89); // NEWFALSE requires_grad
    p.global('collections', 'OrderedDict').op(0x29, 0x52); // backward_hooks = OrderedDict()
    p.op(0x74, 0x52); // TUPLE REDUCE
  }
  if (extraGlobal) p.str('evil').global(...extraGlobal);
  p.op(0x75); // SETITEMS
  // state {'_metadata': OrderedDict()} then BUILD, after the items (pickle's save_reduce order).
  p.op(0x7d).str('_metadata').global('collections', 'OrderedDict').op(0x29, 0x52).op(0x73); // EMPTY_DICT key value SETITEM
  p.op(0x62, 0x2e); // BUILD STOP
  return p.bytes();
}

const f32bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Unique storages of `tensors`, in first-use order. */
function storages(tensors: TorchTensor[]): Map<string, Float32Array> {
  return new Map(tensors.map((t) => [t.storageKey, t.data]));
}

/** torch.save's zip: <prefix>/data.pkl, <prefix>/byteorder, <prefix>/data/<key>, <prefix>/version. */
export function zipPth(
  tensors: TorchTensor[],
  opts: { deflate?: boolean; prefix?: string; extraGlobal?: [string, string]; omitStorages?: string[] } = {},
): Buffer {
  const prefix = opts.prefix ?? 'archive';
  const files: Array<[string, Buffer]> = [
    [`${prefix}/data.pkl`, statePickle(tensors, false, opts.extraGlobal)],
    [`${prefix}/byteorder`, Buffer.from('little')],
    ...[...storages(tensors)]
      .filter(([k]) => !opts.omitStorages?.includes(k))
      .map(([k, d]) => [`${prefix}/data/${k}`, f32bytes(d)] as [string, Buffer]),
    [`${prefix}/version`, Buffer.from('3\n')],
  ];
  return makeZip(files, opts.deflate ?? false);
}

export function makeZip(files: Array<[string, Buffer]>, deflate: boolean): Buffer {
  const out: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const nameBytes = Buffer.from(name);
    const body = deflate ? deflateRawSync(data) : data;
    const crc = crc32(data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    // torch pads the extra field so that data starts 64-byte aligned.
    const extraLen = ((64 - ((offset + 30 + nameBytes.length + 4) % 64)) % 64) + 4;
    local.writeUInt16LE(extraLen, 28);
    const extra = Buffer.alloc(extraLen);
    extra.writeUInt16LE(0x4246, 0); // 'FB' padding record
    extra.writeUInt16LE(extraLen - 4, 2);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(deflate ? 8 : 0, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(nameBytes.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, nameBytes);
    out.push(local, nameBytes, extra, body);
    offset += 30 + nameBytes.length + extraLen + body.length;
  }
  const cdBytes = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cdBytes.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...out, cdBytes, eocd]);
}

/** The legacy torch.save stream: magic, protocol, sys_info, the state dict, the storage keys, the storages. */
export function legacyPth(tensors: TorchTensor[]): Buffer {
  const magic = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
  const protocol = Buffer.from([0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]); // 1001
  const sys = new Pickler();
  sys.op(0x80, 2, 0x7d, 0x28).str('protocol_version').int(1001).str('little_endian').op(0x88);
  sys.str('type_sizes').op(0x7d, 0x28).str('short').int(2).str('int').int(4).str('long').int(4).op(0x75, 0x75, 0x2e);
  const keys = [...storages(tensors).keys()].sort();
  const keyList = new Pickler();
  keyList.op(0x80, 2, 0x5d, 0x28);
  keys.forEach((k) => keyList.str(k));
  keyList.op(0x65, 0x2e); // APPENDS STOP
  const data = keys.flatMap((k) => {
    const d = storages(tensors).get(k)!;
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(d.length));
    return [n, f32bytes(d)];
  });
  return Buffer.concat([magic, protocol, sys.bytes(), statePickle(tensors, true), keyList.bytes(), ...data]);
}

/** The 512-byte ustar header of one member (POSIX.1-1988), its size field `declaredSize` when given (octal, or a raw 12-byte field). */
function tarHeader(name: string, size: number, declaredSize?: Buffer, type = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000600\0', 100, 'latin1'); // mode
  h.write('0000000\0', 108, 'latin1'); // uid
  h.write('0000000\0', 116, 'latin1'); // gid
  (declaredSize ?? Buffer.from(`${size.toString(8).padStart(11, '0')}\0`, 'latin1')).copy(h, 124);
  h.write('13046441000\0', 136, 'latin1'); // mtime
  h.write(type, 156, 'latin1'); // typeflag: '0' a regular file, 'x' a pax header for the next
  h.write('ustar\0' + '00', 257, 'latin1');
  h.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

/** A tar archive of `members` (each padded to 512 bytes), ended by two zero blocks. */
export function tarArchive(members: Array<{ name: string; data: Buffer; declaredSize?: Buffer; type?: string }>): Buffer {
  const parts = members.flatMap((m) => [
    tarHeader(m.name, m.data.length, m.declaredSize, m.type),
    m.data,
    Buffer.alloc((512 - (m.data.length % 512)) % 512),
  ]);
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

/** Storage and tensor keys of the tar format: the saving process's pointers, here small integers. */
const tarKey = (k: number) => 1000 + k;

/** Overrides that make hostile tar-format files; each replaces one declared count or size. */
export interface TarPthOptions {
  storageCount?: number;
  tensorCount?: number;
  /** The int64 element count written before a storage's data (by storage key). */
  storageNumel?: Record<string, bigint>;
  /** The int64 ndim written for every tensor. */
  ndim?: bigint;
}

/**
 * PyTorch's tar format (before 0.1.10) as torch/serialization.py's legacy_load
 * reads it: members sys_info, pickle, tensors, storages (in the order the old
 * torch.save wrote them), pickles of protocol 2, int64 metadata, no views.
 */
export function tarPthMembers(tensors: TorchTensor[], opts: TarPthOptions = {}): Array<{ name: string; data: Buffer }> {
  const storageKeys = [...storages(tensors).keys()];
  const storageId = (key: string) => tarKey(storageKeys.indexOf(key));
  const tensorId = (k: number) => tarKey(100 + k);
  const sys = new Pickler();
  sys.op(0x80, 2, 0x7d, 0x28).str('protocol_version').int(1000).str('little_endian').op(0x88);
  sys.str('type_sizes').op(0x7d, 0x28).str('short').int(2).str('int').int(4).str('long').int(8).op(0x75, 0x75, 0x2e);
  // The state dict: OrderedDict() then SETITEMS of key -> persistent id "<tensor key>".
  const main = new Pickler();
  main.op(0x80, 2).global('collections', 'OrderedDict').op(0x29, 0x52, 0x28);
  tensors.forEach((t, k) =>
    main
      .str(t.key)
      .str(String(tensorId(k)))
      .op(0x51),
  ); // BINPERSID
  main.op(0x75, 0x2e);
  const count = (n: number) => new Pickler().op(0x80, 2).int(n).op(0x2e).bytes();
  const int64 = (v: bigint | number) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    return b;
  };
  const tensorPart = [count(opts.tensorCount ?? tensors.length)];
  tensors.forEach((t, k) => {
    const header = new Pickler().op(0x80, 2, 0x28).int(tensorId(k)).int(storageId(t.storageKey));
    tensorPart.push(header.global('torch', 'FloatTensor').op(0x74, 0x2e).bytes());
    tensorPart.push(int64(opts.ndim ?? t.size.length), ...t.size.map(int64), ...t.stride.map(int64), int64(t.offset));
  });
  const storagePart = [count(opts.storageCount ?? storageKeys.length)];
  for (const [key, data] of storages(tensors)) {
    const header = new Pickler().op(0x80, 2, 0x28).int(storageId(key)).str('cpu');
    storagePart.push(header.global('torch', 'FloatStorage').op(0x74, 0x2e).bytes());
    storagePart.push(int64(opts.storageNumel?.[key] ?? data.length), f32bytes(data));
  }
  storagePart.push(Buffer.from([0x80, 2, 0x5d, 0x2e])); // no storage views: []
  return [
    { name: 'sys_info', data: sys.bytes() },
    { name: 'pickle', data: main.bytes() },
    { name: 'tensors', data: Buffer.concat(tensorPart) },
    { name: 'storages', data: Buffer.concat(storagePart) },
  ];
}

export function tarPth(tensors: TorchTensor[], opts: TarPthOptions = {}): Buffer {
  return tarArchive(tarPthMembers(tensors, opts));
}
