import { PREPROCESSING, UserError, type Preprocessing } from '@nst/core';
import { check } from './errors.js';

/** Names accepted by --preprocessing. */
export const PREPROCESSING_CHOICES: readonly string[] = Object.values(PREPROCESSING).map((p) => p.name);

export function preprocessingByName(name: string): Preprocessing {
  const p = Object.values(PREPROCESSING).find((x) => x.name === name);
  if (!p) throw new UserError(`--preprocessing ${name}: unknown (choose one of ${PREPROCESSING_CHOICES.join(', ')})`);
  return p;
}

/** The largest pixel scale accepted (16-bit images). */
const MAX_SCALE = 65535;

/**
 * A preprocessing read from a file (`field` says where), checked value by
 * value: channelOrder rgb|bgr; scale in (0, 65535]; per channel a mean within
 * the pixel range [-scale, scale] and a std in [scale / 10^4, scale]. Known
 * sets lie far inside these bounds; a value outside (NaN, 1e30, a negative
 * std) would silently wreck every image, so it is an error naming the field.
 */
export function checkPreprocessing(p: unknown, field: string): Preprocessing {
  const bad = (what: string) => `${field}: ${what}`;
  const q = p as Partial<Preprocessing> | null;
  check(q !== null && typeof q === 'object' && !Array.isArray(q), bad('is not an object'), 'WEIGHTS_BAD_PREPROCESSING', field);
  check(
    typeof q.name === 'string' && q.name.length > 0 && q.name.length <= 64,
    bad('has no name'),
    'WEIGHTS_BAD_PREPROCESSING',
    `${field}.name`,
  );
  check(
    q.channelOrder === 'rgb' || q.channelOrder === 'bgr',
    bad('channelOrder is not rgb or bgr'),
    'WEIGHTS_BAD_PREPROCESSING',
    `${field}.channelOrder`,
  );
  const scale = q.scale;
  check(
    typeof scale === 'number' && Number.isFinite(scale) && scale > 0 && scale <= MAX_SCALE,
    () => bad(`scale is ${String(scale)}, expected a number in (0, ${MAX_SCALE}]`),
    'WEIGHTS_BAD_PREPROCESSING',
    `${field}.scale`,
  );
  const triple = (name: 'mean' | 'std', min: number, max: number): void => {
    const v: unknown = q[name];
    const ok = Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= min && x <= max);
    const shown = JSON.stringify(v)?.slice(0, 60) ?? String(v);
    check(ok, () => bad(`${name} is ${shown}, expected 3 numbers in [${min}, ${max}]`), 'WEIGHTS_BAD_PREPROCESSING', `${field}.${name}`);
  };
  triple('mean', -scale, scale);
  triple('std', scale / 1e4, scale);
  return q as Preprocessing;
}
