import { findLayer, MAX_SIDE, UserError, VGG19_LAYER_NAMES, type SizeSpec, type WeightedLayer } from '@nst/core';

/*
 * Text to job values: the one parser behind the CLI's flags, batch manifests
 * and the HTTP API's fields. Each takes the job field it parses (camelCase)
 * for its errors; the caller names that field its own way.
 */

/** A finite decimal number: '2', '-0.5', '1e-3'. */
export function parseNumber(text: string, field: string): number {
  const t = text.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) throw new UserError(`'${text}' is not a number`, { field });
  const v = Number(t);
  if (!Number.isFinite(v)) throw new UserError(`'${text}' is not a finite number`, { field });
  return v;
}

/** A count: decimal digits only (no 0x10, 0b101, 1e3, 2.0), in min..max. */
export function parseCount(text: string, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new UserError(`'${text}' is not a whole number (decimal digits only)`, { field });
  const v = Number(t);
  if (v < min || v > max) throw new UserError(`${t} is out of range ${min}..${max}`, { field });
  return v;
}

/** `400x300` (width x height) or `512` (the longest side). */
export function parseSize(text: string, field = 'size'): SizeSpec {
  const t = text.trim().toLowerCase();
  const exact = /^(\d+)x(\d+)$/.exec(t);
  const checkSide = (n: number, what: string) => {
    if (!Number.isInteger(n) || n < 1 || n > MAX_SIDE) throw new UserError(`${what} ${n} is out of range 1..${MAX_SIDE}`, { field });
  };
  if (exact) {
    const width = Number(exact[1]);
    const height = Number(exact[2]);
    checkSide(width, 'width');
    checkSide(height, 'height');
    return { kind: 'exact', width, height };
  }
  if (/^\d+$/.test(t)) {
    const longest = Number(t);
    checkSide(longest, 'size');
    return { kind: 'longest', longest };
  }
  throw new UserError(`'${text}' is not WIDTHxHEIGHT (e.g. 400x300) or a longest side in pixels (e.g. 512)`, { field });
}

/**
 * `conv4_2:1,conv5_2:0.5`; a layer without `:weight` has `defaultWeight`.
 * `conv4_2:` (a colon and no weight) is an error, and so are weights that are all 0.
 */
export function parseLayerList(text: string, field: string, defaultWeight = 1): WeightedLayer[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw new UserError('expected layer[:weight],... but got an empty list', { field });
  const layers = items.map((item) => {
    const [name, w, ...rest] = item.split(':');
    if (rest.length > 0) throw new UserError(`'${item}' is not of the form layer:weight`, { field });
    const layer = findLayer(name);
    if (!layer)
      throw new UserError(`unknown layer '${name}' (VGG-19 layers are ${VGG19_LAYER_NAMES.join(', ')})`, { code: 'not-found', field });
    const weight = w === undefined ? defaultWeight : parseNumber(w, field);
    if (!(weight >= 0)) throw new UserError(`weight '${w}' of ${name} is not a non-negative number`, { field });
    return { layer: layer.name, weight };
  });
  const twice = layers.find((l, i) => layers.findIndex((m) => m.layer === l.layer) !== i);
  if (twice) throw new UserError(`layer ${twice.layer} is listed twice`, { field });
  if (layers.every((l) => l.weight === 0)) throw new UserError('every layer has weight 0', { field });
  return layers;
}
