/**
 * safetensors (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON mapping each tensor name to
 * {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data
 * that follows the header) plus an optional "__metadata__" of strings, then
 * the raw little-endian data. It is the cache format: the file is read in one
 * go and float32 kernels are used in place, so loading is a single read.
 */
import { open, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { ByteReader, bfloat16ToFloat, float32View, floatToHalf, halfToFloat } from './bytes.js';
import { check, checkInt, fail } from './errors.js';

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

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const MAX_HEADER_BYTES = 100_000_000;

export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const r = new ByteReader(bytes, 'safetensors');
  const headerSize = r.u64(0, 'header length');
  check(headerSize >= 2 && headerSize <= MAX_HEADER_BYTES, `header length ${headerSize} is out of range`);
  const header = parseHeaderJson(r.utf8(8, headerSize));
  const dataStart = 8 + headerSize;
  const dataLength = bytes.length - dataStart;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(entry);
      continue;
    }
    const { dtype, shape, data_offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    check(typeof dtype === 'string' && dtype in DTYPE_BYTES, `tensor ${name} has unsupported dtype ${String(dtype)}`);
    check(Array.isArray(shape) && shape.length <= 8, `tensor ${name} has no valid shape`);
    check(Array.isArray(data_offsets) && data_offsets.length === 2, `tensor ${name} has no data_offsets pair`);
    const dims = shape.map((d) => checkInt(d, `tensor ${name} dimension`, 0, dataLength));
    const begin = checkInt(data_offsets[0], `tensor ${name} data start`, 0, dataLength);
    const end = checkInt(data_offsets[1], `tensor ${name} data end`, begin, dataLength);
    const count = dims.reduce((a, b) => a * b, 1);
    check(count * DTYPE_BYTES[dtype] === end - begin, `tensor ${name}: shape [${dims.join(', ')}] of ${dtype} needs ${count * DTYPE_BYTES[dtype]} bytes, data_offsets give ${end - begin}`);
    tensors.set(name, { dtype, shape: dims, bytes: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return { tensors, metadata };
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
export function tensorToFloat32(name: string, t: SafeTensor): Float32Array {
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const n = t.bytes.byteLength / (DTYPE_BYTES[t.dtype] ?? 1);
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

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readFile(path));
}

/**
 * Writes float32 tensors (stored as F32, or as F16 where a tensor asks) and
 * string metadata to `path` atomically (a temporary file in the same folder,
 * then a rename), so a crash or Ctrl-C never leaves a half-written cache that
 * a later run would trust.
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyArray<{ name: string; shape: readonly number[]; data: Float32Array; dtype?: 'F32' | 'F16' }>,
  metadata: Record<string, string>,
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const payloads = tensors.map((t) => (t.dtype === 'F16' ? halfBytes(t.name, t.data) : Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
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
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fh = await open(tmp, 'w');
  try {
    for (const chunk of chunks) await writeAll(fh, chunk);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
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
