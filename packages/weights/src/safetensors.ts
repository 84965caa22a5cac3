/**
 * safetensors (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON mapping each tensor name to
 * {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data
 * that follows the header) plus an optional "__metadata__" of strings, then
 * the raw little-endian data. It is the cache format. Loading reads the
 * header, then only the tensors wanted (float32 ones used in place), so the
 * cache loads in a few reads and a file of any size can be read.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from '@nst/files';
import { MemoryBudget } from './budget.js';
import { ByteReader, bfloat16ToFloat, float32View, floatToHalf, halfToFloat } from './bytes.js';
import { check, checkInt, fail } from './errors.js';
import { readWholeFile, type FileBytes } from './filebytes.js';

export interface SafeTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
  /** The raw bytes (a view into the file's buffer). */
  readonly bytes: Uint8Array;
}

export interface SafetensorsFile {
  readonly tensors: Map<string, SafeTensor>;
  readonly metadata: Record<string, string>;
}

/** One tensor as the header declares it: [begin, end) relative to the data after the header. */
export interface TensorEntry {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  readonly entries: Map<string, TensorEntry>;
  readonly metadata: Record<string, string>;
  /** Where the data starts in the file (8 + header length). */
  readonly dataStart: number;
}

export const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** The JSON header; the reference implementation allows 100 MB, but 16 MiB describes some 100,000 tensors. */
const MAX_HEADER_BYTES = 16 << 20;

/** The header length in the first 8 bytes, checked against the file's size. */
export function headerLength(first8: Uint8Array, fileSize: number): number {
  const headerSize = new ByteReader(first8, 'safetensors').u64(0, 'header length');
  check(
    headerSize >= 2 && headerSize <= MAX_HEADER_BYTES,
    `header length ${headerSize} is out of range (2..${MAX_HEADER_BYTES})`,
    'WEIGHTS_TOO_LARGE',
    'header length',
  );
  check(
    8 + headerSize <= fileSize,
    `header length ${headerSize} runs past the end of the ${fileSize}-byte file`,
    'WEIGHTS_CORRUPT',
    'header length',
  );
  return headerSize;
}

/**
 * The header's tensors, each checked: a known dtype, a shape whose size
 * matches its data_offsets, offsets inside the `dataLength` bytes that
 * follow the header, and no two tensors sharing bytes (as the format requires).
 */
export function parseHeader(json: string, dataStart: number, dataLength: number): SafetensorsHeader {
  const header = parseHeaderJson(json);
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(entry);
      continue;
    }
    const { dtype, shape, data_offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    check(
      typeof dtype === 'string' && dtype in DTYPE_BYTES,
      `tensor ${name} has unsupported dtype ${String(dtype)}`,
      'WEIGHTS_CORRUPT',
      `${name}.dtype`,
    );
    check(Array.isArray(shape) && shape.length <= 8, `tensor ${name} has no valid shape`, 'WEIGHTS_CORRUPT', `${name}.shape`);
    check(
      Array.isArray(data_offsets) && data_offsets.length === 2,
      `tensor ${name} has no data_offsets pair`,
      'WEIGHTS_CORRUPT',
      `${name}.data_offsets`,
    );
    const dims = shape.map((d) => checkInt(d, `tensor ${name} dimension`, 0, dataLength));
    const begin = checkInt(data_offsets[0], `tensor ${name} data start`, 0, dataLength);
    const end = checkInt(data_offsets[1], `tensor ${name} data end`, begin, dataLength);
    const count = dims.reduce((a, b) => a * b, 1);
    check(
      count * DTYPE_BYTES[dtype] === end - begin,
      `tensor ${name}: shape [${dims.join(', ')}] of ${dtype} needs ${count * DTYPE_BYTES[dtype]} bytes, data_offsets give ${end - begin}`,
      'WEIGHTS_CORRUPT',
      `${name}.shape`,
    );
    entries.set(name, { dtype, shape: dims, begin, end });
  }
  const sorted = [...entries].filter(([, e]) => e.end > e.begin).sort(([, a], [, b]) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++)
    check(
      sorted[i][1].begin >= sorted[i - 1][1].end,
      `tensors ${sorted[i - 1][0]} and ${sorted[i][0]} share bytes`,
      'WEIGHTS_CORRUPT',
      `${sorted[i][0]}.data_offsets`,
    );
  return { entries, metadata, dataStart };
}

/** A whole safetensors file in memory (tensors are views into `bytes`). */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const headerSize = headerLength(bytes.subarray(0, 8), bytes.length);
  const dataStart = 8 + headerSize;
  const { entries, metadata } = parseHeader(
    Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerSize).toString('utf8'),
    dataStart,
    bytes.length - dataStart,
  );
  const tensors = new Map<string, SafeTensor>();
  for (const [name, e] of entries)
    tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: bytes.subarray(dataStart + e.begin, dataStart + e.end) });
  return { tensors, metadata };
}

/**
 * The header of the open file, read on its own: the tensors are then read
 * one by one (readTensor), so a file of any size (beyond the 2 GiB a single
 * buffer holds) costs only the tensors wanted.
 */
export async function readHeader(file: FileBytes): Promise<SafetensorsHeader> {
  const headerSize = headerLength(await file.read(0, Math.min(8, file.size), 'the header length'), file.size);
  const json = (await file.read(8, headerSize, 'the header')).toString('utf8');
  return parseHeader(json, 8 + headerSize, file.size - 8 - headerSize);
}

export async function readTensor(file: FileBytes, header: SafetensorsHeader, name: string): Promise<SafeTensor> {
  const e = header.entries.get(name) ?? fail(`no tensor ${name}`);
  return { dtype: e.dtype, shape: e.shape, bytes: await file.read(header.dataStart + e.begin, e.end - e.begin, `tensor ${name}`) };
}

function parseHeaderJson(text: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  check(header !== null && typeof header === 'object' && !Array.isArray(header), 'header is not a JSON object');
  return header as Record<string, unknown>;
}

function parseMetadata(entry: unknown): Record<string, string> {
  check(entry !== null && typeof entry === 'object' && !Array.isArray(entry), '__metadata__ is not an object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry as object)) {
    check(typeof v === 'string', `__metadata__ entry ${k} is not a string`);
    out[k] = v;
  }
  return out;
}

/** A tensor's values as float32 (F32 in place when aligned; other float dtypes converted). */
export function tensorToFloat32(name: string, t: SafeTensor, budget?: MemoryBudget): Float32Array {
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const n = t.bytes.byteLength / (DTYPE_BYTES[t.dtype] ?? 1);
  if (t.dtype !== 'F32' || t.bytes.byteOffset % 4 !== 0) budget?.take(4 * n, `tensor ${name} as float32`);
  switch (t.dtype) {
    case 'F32':
      return float32View(t.bytes);
    case 'F64':
      return Float32Array.from({ length: n }, (_, i) => view.getFloat64(8 * i, true));
    case 'F16':
      return Float32Array.from({ length: n }, (_, i) => halfToFloat(view.getUint16(2 * i, true)));
    case 'BF16':
      return Float32Array.from({ length: n }, (_, i) => bfloat16ToFloat(view.getUint16(2 * i, true)));
    default:
      fail(`tensor ${name} is ${t.dtype}, expected a floating-point dtype`);
  }
}

/** A whole (regular) safetensors file, read into memory within a default memory budget. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readWholeFile(path, new MemoryBudget(), 'the file'));
}

/**
 * Writes float32 tensors (stored as F32, or as F16 where a tensor asks) and
 * string metadata to `path` atomically (writeFileAtomic: a temporary file
 * beside it, then a rename), so a crash or Ctrl-C never leaves a half-written
 * cache that a later run would trust.
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyArray<{ name: string; shape: readonly number[]; data: Float32Array; dtype?: 'F32' | 'F16' }>,
  metadata: Record<string, string>,
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const payloads = tensors.map((t) =>
    t.dtype === 'F16' ? halfBytes(t.name, t.data) : Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  );
  let offset = 0;
  tensors.forEach((t, i) => {
    header[t.name] = { dtype: t.dtype ?? 'F32', shape: t.shape, data_offsets: [offset, offset + payloads[i].byteLength] };
    offset += payloads[i].byteLength;
  });
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header with spaces so the data starts 8-byte aligned (as the reference writer does).
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  const chunks = [size, json, ...payloads];
  await writeFileAtomic(path, async (tmp) => {
    const fh = await open(tmp, 'w');
    try {
      for (const chunk of chunks) await writeAll(fh, chunk);
    } finally {
      await fh.close();
    }
  });
}

/** float32 values as little-endian float16; a value beyond the half range is an error, not an infinity. */
function halfBytes(name: string, data: Float32Array): Buffer {
  const out = Buffer.alloc(2 * data.length);
  data.forEach((v, i) => {
    if (!(Math.abs(v) <= HALF_MAX)) throw new RangeError(`tensor ${name}: ${v} cannot be stored as float16`);
    out.writeUInt16LE(floatToHalf(v), 2 * i);
  });
  return out;
}

/** The largest finite float16. */
const HALF_MAX = 65504;

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.length; ) done += (await fh.write(chunk, done, chunk.length - done)).bytesWritten;
}
