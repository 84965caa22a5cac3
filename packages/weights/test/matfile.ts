/**
 * A test-side MAT-file (level 5) writer, from MATLAB's "MAT-File Format"
 * document: tags, small elements for <= 4 bytes, 8-byte padding, miMATRIX
 * with array flags / dims / name, cells, structs, chars (miUTF16 like MATLAB),
 * and v7's miCOMPRESSED (zlib) variables. Arrays are column-major.
 */
import { deflateSync } from 'node:zlib';

const MI = { INT8: 1, UINT8: 2, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9, MATRIX: 14, COMPRESSED: 15, UTF16: 17 };
const MX = { CELL: 1, STRUCT: 2, CHAR: 4, DOUBLE: 6, SINGLE: 7 };

export type MatValue =
  | { t: 'single' | 'double'; dims: number[]; data: ArrayLike<number> }
  | { t: 'char'; text: string }
  | { t: 'cell'; dims: number[]; items: MatValue[] }
  | { t: 'struct'; fields: Array<[string, MatValue]> }
  /** An array element whose content is these bytes as they are (valid or not). */
  | { t: 'raw'; bytes: Buffer };

function element(type: number, data: Buffer): Buffer {
  if (data.length <= 4 && type !== MI.MATRIX) {
    const b = Buffer.alloc(8);
    b.writeUInt32LE((data.length << 16) | type, 0);
    data.copy(b, 4);
    return b;
  }
  const tag = Buffer.alloc(8);
  tag.writeUInt32LE(type, 0);
  tag.writeUInt32LE(data.length, 4);
  const pad = Buffer.alloc((8 - (data.length % 8)) % 8);
  return Buffer.concat([tag, data, pad]);
}

function int32s(values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeInt32LE(v, 4 * i));
  return b;
}

function matrix(name: string, v: MatValue): Buffer {
  if (v.t === 'raw') return element(MI.MATRIX, v.bytes);
  const flags = (cls: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(cls, 0);
    return element(MI.UINT32, b);
  };
  const head = (cls: number, dims: number[]) => [
    flags(cls),
    element(MI.INT32, int32s(dims)),
    element(MI.INT8, Buffer.from(name, 'latin1')),
  ];
  let parts: Buffer[];
  switch (v.t) {
    case 'single':
    case 'double': {
      const single = v.t === 'single';
      const data = Buffer.alloc((single ? 4 : 8) * v.data.length);
      for (let i = 0; i < v.data.length; i++) single ? data.writeFloatLE(v.data[i], 4 * i) : data.writeDoubleLE(v.data[i], 8 * i);
      parts = [...head(single ? MX.SINGLE : MX.DOUBLE, v.dims), element(single ? MI.SINGLE : MI.DOUBLE, data)];
      break;
    }
    case 'char': {
      parts = [...head(MX.CHAR, [1, v.text.length]), element(MI.UTF16, Buffer.from(v.text, 'utf16le'))];
      break;
    }
    case 'cell':
      parts = [...head(MX.CELL, v.dims), ...v.items.map((it) => matrix('', it))];
      break;
    case 'struct': {
      const len = 32;
      const names = Buffer.alloc(len * v.fields.length);
      v.fields.forEach(([f], i) => names.write(f, i * len, 'latin1'));
      parts = [
        ...head(MX.STRUCT, [1, 1]),
        element(MI.INT32, int32s([len])),
        element(MI.INT8, names),
        ...v.fields.map(([, fv]) => matrix('', fv)),
      ];
      break;
    }
    default:
      throw new Error('unreachable');
  }
  return element(MI.MATRIX, Buffer.concat(parts));
}

export function matFile(variables: Array<[string, MatValue]>, compressed: boolean): Buffer {
  const header = Buffer.alloc(128, 0x20);
  header.write('MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Fri Nov 27 09:00:00 2026', 0, 'latin1');
  header.fill(0, 116, 124);
  header.writeUInt16LE(0x0100, 124);
  header.write('IM', 126, 'latin1');
  const vars = variables.map(([name, v]) => {
    const m = matrix(name, v);
    if (!compressed) return m;
    const z = deflateSync(m);
    const tag = Buffer.alloc(8);
    tag.writeUInt32LE(MI.COMPRESSED, 0);
    tag.writeUInt32LE(z.length, 4);
    return Buffer.concat([tag, z]);
  });
  return Buffer.concat([header, ...vars]);
}

/** MATLAB's column-major layout of an HWIO kernel: F(h, w, i, o) at h + 3w + 9i + 9*I*o. */
export function columnMajorKernel(hwioKernel: Float32Array, I: number, O: number): Float32Array {
  const out = new Float32Array(hwioKernel.length);
  for (let h = 0; h < 3; h++)
    for (let w = 0; w < 3; w++)
      for (let i = 0; i < I; i++)
        for (let o = 0; o < O; o++) out[h + 3 * w + 9 * i + 9 * I * o] = hwioKernel[((h * 3 + w) * I + i) * O + o];
  return out;
}

/**
 * A MatConvNet `conv` layer struct: its name and its weights cell {kernel
 * (column-major), bias}; `extra` fields follow (size, pad, stride, ...).
 */
export function matConvLayer(
  name: string,
  hwioKernel: Float32Array,
  bias: Float32Array,
  I: number,
  O: number,
  { biasType = 'single', extra = [] }: { biasType?: 'single' | 'double'; extra?: Array<[string, MatValue]> } = {},
): MatValue {
  const str = (text: string): MatValue => ({ t: 'char', text });
  return {
    t: 'struct',
    fields: [
      ['name', str(name)],
      ['type', str('conv')],
      [
        'weights',
        {
          t: 'cell',
          dims: [1, 2],
          items: [
            { t: 'single', dims: [3, 3, I, O], data: columnMajorKernel(hwioKernel, I, O) },
            { t: biasType, dims: [O, 1], data: bias },
          ],
        },
      ],
      ...extra,
    ],
  };
}
