/**
 * MATLAB level-5 MAT-files (MATLAB's "MAT-File Format", v5/v6/v7): a 128-byte
 * header, then data elements, each an 8-byte tag (type, byte count; or the
 * "small element" form packing <= 4 bytes into the tag) and its data padded
 * to 8 bytes. Variables are miMATRIX elements: array flags (class), dims,
 * name, then by class the numeric data, characters, cells (one miMATRIX per
 * element) or structs (field names, then one miMATRIX per field per
 * element), all column-major. v7 files wrap each variable in a zlib stream
 * (miCOMPRESSED). This parser builds a tree whose numeric arrays point into
 * the bytes (no copies) and checks every size against the bytes it has.
 */
import { MemoryBudget } from './budget.js';
import { ByteReader, float32View } from './bytes.js';
import { check, fail } from './errors.js';

export const MI = {
  INT8: 1,
  UINT8: 2,
  INT16: 3,
  UINT16: 4,
  INT32: 5,
  UINT32: 6,
  SINGLE: 7,
  DOUBLE: 9,
  INT64: 12,
  UINT64: 13,
  MATRIX: 14,
  COMPRESSED: 15,
  UTF8: 16,
  UTF16: 17,
  UTF32: 18,
} as const;
export const MX = { CELL: 1, STRUCT: 2, OBJECT: 3, CHAR: 4, SPARSE: 5, DOUBLE: 6, SINGLE: 7 } as const;
const ELEMENT_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4 };

export type MatArray =
  | { kind: 'numeric'; name: string; dims: number[]; cls: number; type: number; data: Uint8Array }
  | { kind: 'char'; name: string; dims: number[]; text: string }
  | { kind: 'cell'; name: string; dims: number[]; items: MatArray[] }
  | { kind: 'struct'; name: string; dims: number[]; fields: string[]; elements: Array<Map<string, MatArray>> }
  | { kind: 'unsupported'; name: string; dims: number[]; cls: number };

export interface Tag {
  readonly type: number;
  readonly size: number;
  /** Where the data starts. */
  readonly dataOffset: number;
  /** Where the next element starts (data padded to 8 bytes; compressed data unpadded). */
  readonly next: number;
}

/** Reads the tag at `offset` (regular or small element form); the data may lie beyond `r`'s end. */
export function readTag(r: ByteReader, offset: number): Tag {
  const first = r.u32(offset);
  if (first >>> 16 !== 0) {
    const size = first >>> 16;
    check(size <= 4, `MAT small element at byte ${offset} claims ${size} bytes`);
    return { type: first & 0xffff, size, dataOffset: offset + 4, next: offset + 8 };
  }
  const size = r.u32(offset + 4);
  const padded = first === MI.COMPRESSED ? size : Math.ceil(size / 8) * 8;
  return { type: first, size, dataOffset: offset + 8, next: offset + 8 + padded };
}

/** The data of the element at `offset`, checked to lie inside `r`. */
function element(r: ByteReader, offset: number, what: string): { tag: Tag; data: Uint8Array } {
  const tag = readTag(r, offset);
  return { tag, data: r.slice(tag.dataOffset, tag.size, what) };
}

export interface MatrixHeader {
  readonly flags: number;
  readonly cls: number;
  readonly dims: number[];
  readonly name: string;
  /** Offset of the first sub-element after the name. */
  readonly body: number;
  /** Number of elements (product of dims). */
  readonly count: number;
}

/** MATLAB arrays have few dimensions; a longer list is corrupt (and each costs memory). */
const MAX_DIMS = 32;
/** What one parsed array costs in memory (an object, a Map entry), charged to the budget. */
const NODE_BYTES = 128;
/** Arrays allowed beyond one per 8 bytes parsed: zero-field struct elements take no bytes at all. */
const FREE_NODES = 4096;

/**
 * Counts the arrays built from one variable. Every array but the elements of
 * a zero-field struct has a tag of at least 8 bytes, so more arrays than
 * bytes / 8 (plus a few) means a struct claiming elements its bytes do not
 * hold; each array is also charged to the file's memory budget.
 */
export class MatNodes {
  private count = 0;
  constructor(private readonly budget: MemoryBudget) {}

  add(n: number, bytesParsed: number, what: string): void {
    check(
      Number.isSafeInteger(n) && this.count + n <= FREE_NODES + bytesParsed / 8,
      () => `${what} claims ${n} elements, more than the ${bytesParsed} bytes parsed can hold`,
      'WEIGHTS_TOO_LARGE',
      what,
    );
    this.budget.take(n * NODE_BYTES, what);
    this.count += n;
  }
}

/** Parses array flags, dims and name of the miMATRIX whose data starts at `start`. */
export function readMatrixHeader(r: ByteReader, start: number): MatrixHeader {
  const flags = element(r, start, 'MAT array flags');
  check(flags.tag.type === MI.UINT32 && flags.tag.size === 8, `MAT array at byte ${start} has no array flags`);
  const flagWord = new ByteReader(flags.data, 'MAT array flags').u32(0);
  const dimsEl = element(r, flags.tag.next, 'MAT dimensions');
  check(dimsEl.tag.type === MI.INT32 && dimsEl.tag.size % 4 === 0 && dimsEl.tag.size >= 8, `MAT array at byte ${start} has no dimensions`);
  check(dimsEl.tag.size / 4 <= MAX_DIMS, `MAT array at byte ${start} has ${dimsEl.tag.size / 4} dimensions`);
  const dr = new ByteReader(dimsEl.data, 'MAT dimensions');
  const dims = Array.from({ length: dimsEl.tag.size / 4 }, (_, i) => dr.i32(4 * i));
  check(
    dims.every((d) => d >= 0),
    `MAT array at byte ${start} has a negative dimension`,
  );
  const count = dims.reduce((a, b) => a * b, 1);
  check(Number.isSafeInteger(count), `MAT array at byte ${start} has dims ${dims.join('x')}: too many elements`, 'WEIGHTS_TOO_LARGE');
  const nameEl = element(r, dimsEl.tag.next, 'MAT array name');
  check(nameEl.tag.type === MI.INT8 || nameEl.tag.type === MI.UINT8, `MAT array at byte ${start} has no name`);
  return { flags: flagWord, cls: flagWord & 0xff, dims, name: Buffer.from(nameEl.data).toString('latin1'), body: nameEl.tag.next, count };
}

/**
 * Parses the miMATRIX whose data is r[start, end) into a tree; `nodes` counts
 * (and charges) every array built, across the calls that share it.
 */
export function parseMatrix(r: ByteReader, start: number, end: number, nodes: MatNodes, depth = 0): MatArray {
  check(depth < 32, 'MAT arrays nested more than 32 deep');
  nodes.add(1, r.length, 'a MAT array');
  if (start === end) return { kind: 'numeric', name: '', dims: [0, 0], cls: MX.DOUBLE, type: MI.DOUBLE, data: new Uint8Array(0) };
  const h = readMatrixHeader(r, start);
  // Each element of a cell or struct needs at least a tag: this bounds count by the bytes present.
  const sub = (offset: number, what: string): { value: MatArray; next: number } => {
    const tag = readTag(r, offset);
    check(tag.type === MI.MATRIX, `${what} is not a MAT array (type ${tag.type})`);
    check(tag.next <= end, `${what} runs past its parent`);
    r.need(tag.dataOffset, tag.size, what);
    return { value: parseMatrix(r, tag.dataOffset, tag.dataOffset + tag.size, nodes, depth + 1), next: tag.next };
  };
  switch (h.cls) {
    case MX.CELL: {
      check(h.count <= (end - h.body) / 8, `MAT cell ${h.name} claims ${h.count} elements`, 'WEIGHTS_TOO_LARGE', h.name);
      const items: MatArray[] = [];
      let p = h.body;
      for (let i = 0; i < h.count; i++) {
        const { value, next } = sub(p, `element ${i + 1} of cell ${h.name || '(unnamed)'}`);
        items.push(value);
        p = next;
      }
      return { kind: 'cell', name: h.name, dims: h.dims, items };
    }
    case MX.STRUCT: {
      const lenEl = element(r, h.body, 'MAT field name length');
      check(lenEl.tag.type === MI.INT32 && lenEl.tag.size === 4, `MAT struct ${h.name} has no field name length`);
      const fieldLen = new ByteReader(lenEl.data, 'field name length').i32(0);
      check(fieldLen > 0 && fieldLen <= 4096, `MAT struct ${h.name} has field names of length ${fieldLen}`);
      const namesEl = element(r, lenEl.tag.next, 'MAT field names');
      check(namesEl.tag.size % fieldLen === 0, `MAT struct ${h.name} has a partial field name`);
      nodes.add(namesEl.tag.size / fieldLen, r.length, `MAT struct ${h.name || '(unnamed)'} field names`);
      const fields = Array.from({ length: namesEl.tag.size / fieldLen }, (_, i) =>
        Buffer.from(namesEl.data.subarray(i * fieldLen, (i + 1) * fieldLen))
          .toString('latin1')
          .replace(/\0.*$/s, ''),
      );
      check(
        h.count * fields.length <= (end - namesEl.tag.next) / 8,
        `MAT struct ${h.name} claims ${h.count} elements`,
        'WEIGHTS_TOO_LARGE',
        h.name,
      );
      // Elements of a zero-field struct take no bytes: only the count of arrays built bounds them.
      nodes.add(h.count, r.length, `MAT struct ${h.name || '(unnamed)'}`);
      const elements: Array<Map<string, MatArray>> = [];
      let p = namesEl.tag.next;
      for (let i = 0; i < h.count; i++) {
        const m = new Map<string, MatArray>();
        for (const f of fields) {
          const { value, next } = sub(p, `field ${f} of ${h.name || 'a struct'}`);
          m.set(f, value);
          p = next;
        }
        elements.push(m);
      }
      return { kind: 'struct', name: h.name, dims: h.dims, fields, elements };
    }
    case MX.CHAR: {
      const { tag, data } = element(r, h.body, `MAT characters of ${h.name}`);
      return { kind: 'char', name: h.name, dims: h.dims, text: decodeChars(tag.type, data) };
    }
    default: {
      if (h.cls < MX.DOUBLE || h.cls > 15) return { kind: 'unsupported', name: h.name, dims: h.dims, cls: h.cls };
      check(!(h.flags & 0x800), `MAT array ${h.name} is complex`);
      const { tag, data } = element(r, h.body, `MAT data of ${h.name}`);
      const size = ELEMENT_SIZE[tag.type];
      check(size !== undefined && tag.type <= MI.UINT64, `MAT array ${h.name} has data of unsupported type ${tag.type}`);
      check(data.length === h.count * size, `MAT array ${h.name} of ${h.count} elements holds ${data.length} bytes of type ${tag.type}`);
      return { kind: 'numeric', name: h.name, dims: h.dims, cls: h.cls, type: tag.type, data };
    }
  }
}

function decodeChars(type: number, data: Uint8Array): string {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  switch (type) {
    case MI.UTF8:
    case MI.UINT8:
    case MI.INT8:
      return b.toString('utf8');
    case MI.UTF16:
    case MI.UINT16:
      return b.subarray(0, b.length - (b.length % 2)).toString('utf16le');
    default:
      fail(`MAT characters of unsupported type ${type}`);
  }
}

/** The values of a numeric array as float32 (MATLAB may store a single or double array in a smaller integer type). */
export function numericValues(a: MatArray, what: string, budget: MemoryBudget): Float32Array {
  check(a.kind === 'numeric', `${what} is not a numeric array`);
  if (a.type === MI.SINGLE) return float32View(a.data);
  const r = new ByteReader(a.data, what);
  const n = a.dims.reduce((x, y) => x * y, 1);
  budget.take(4 * n, what);
  const read: (o: number) => number =
    {
      [MI.DOUBLE]: (o: number) => r.f64(8 * o),
      [MI.INT8]: (o: number) => (r.u8(o) << 24) >> 24,
      [MI.UINT8]: (o: number) => r.u8(o),
      [MI.INT16]: (o: number) => (r.u16(2 * o) << 16) >> 16,
      [MI.UINT16]: (o: number) => r.u16(2 * o),
      [MI.INT32]: (o: number) => r.i32(4 * o),
      [MI.UINT32]: (o: number) => r.u32(4 * o),
    }[a.type] ?? fail(`${what} has data of unsupported type ${a.type}`);
  return Float32Array.from({ length: n }, (_, i) => read(i));
}

/** The 128-byte header: descriptive text, then version 0x0100 and the endian indicator "IM" (little-endian). */
export function checkMatHeader(head: Uint8Array): void {
  const text = Buffer.from(head.subarray(0, 116)).toString('latin1');
  if (text.startsWith('MATLAB 7.3')) fail('MATLAB v7.3 files are HDF5; re-save it with save(..., "-v7")');
  check(head.length >= 128, 'the MAT-file header is truncated');
  const endian = Buffer.from(head.subarray(126, 128)).toString('latin1');
  if (endian === 'MI') fail('big-endian MAT-files are not supported');
  check(endian === 'IM', 'the MAT-file header has no endian indicator');
}
