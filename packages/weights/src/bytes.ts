import { check, fail } from './errors.js';

/**
 * Bounds-checked little-endian reads over a byte array. Every parser reads
 * file content through this, so a corrupt length or offset becomes a
 * FormatError ("... at byte N runs past the end of the data") instead of a
 * RangeError, a garbage read or an enormous allocation.
 */
export class ByteReader {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    /** What these bytes are, for messages ("the pickle", "zip central directory"). */
    readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }

  /** Throws unless [offset, offset + size) lies inside the data. */
  need(offset: number, size: number, what = 'a field'): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0 || offset + size > this.bytes.length)
      fail(`${this.what}: ${what} at byte ${offset} (${size} bytes) runs past the end of the data (${this.bytes.length} bytes)`);
  }

  u8(o: number): number {
    this.need(o, 1);
    return this.bytes[o];
  }
  u16(o: number): number {
    this.need(o, 2);
    return this.view.getUint16(o, true);
  }
  u32(o: number): number {
    this.need(o, 4);
    return this.view.getUint32(o, true);
  }
  i32(o: number): number {
    this.need(o, 4);
    return this.view.getInt32(o, true);
  }
  f32(o: number): number {
    this.need(o, 4);
    return this.view.getFloat32(o, true);
  }
  f64(o: number): number {
    this.need(o, 8);
    return this.view.getFloat64(o, true);
  }

  /** An unsigned 64-bit value that must fit a JavaScript safe integer. */
  u64(o: number, what = 'a 64-bit length'): number {
    this.need(o, 8);
    const v = this.view.getBigUint64(o, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${this.what}: ${what} at byte ${o} is implausibly large (${v})`);
    return Number(v);
  }

  i64(o: number): number {
    this.need(o, 8);
    const v = this.view.getBigInt64(o, true);
    check(
      v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER),
      `${this.what}: 64-bit integer at byte ${o} is out of range`,
    );
    return Number(v);
  }

  /** A view (no copy) of [offset, offset + size). */
  slice(offset: number, size: number, what?: string): Uint8Array {
    this.need(offset, size, what);
    return this.bytes.subarray(offset, offset + size);
  }

  ascii(offset: number, size: number): string {
    return Buffer.from(this.slice(offset, size)).toString('latin1');
  }

  utf8(offset: number, size: number): string {
    return Buffer.from(this.slice(offset, size)).toString('utf8');
  }
}

/** IEEE 754 half precision to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * A number to IEEE 754 half precision, rounded to nearest even (the inverse
 * of halfToFloat on every half value); beyond the half range it gives
 * infinity, so writers check the range first.
 */
export function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    const half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

/** The values rounded to the nearest half-precision numbers (what a float16 file would give back). */
export function roundToHalf(values: Float32Array): Float32Array {
  return values.map((v) => halfToFloat(floatToHalf(v)));
}

/** bfloat16 to a number: the top half of a float32. */
export function bfloat16ToFloat(h: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = h << 16;
  return f[0];
}

/**
 * Little-endian float32 values at `bytes` as a Float32Array: a view when the
 * offset is 4-byte aligned (no copy of large kernels), a copy otherwise.
 */
export function float32View(bytes: Uint8Array): Float32Array {
  check(bytes.byteLength % 4 === 0, `float32 data of ${bytes.byteLength} bytes is not a whole number of values`);
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const copy = new Uint8Array(bytes.byteLength); // (Buffer#slice would share memory, not copy)
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}
