/** Test helpers of the weight readers: small deterministic values and expectations. */
import { expect } from 'vitest';
import { VGG19_LAYERS, isUserError } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { sharedAvailable } from '@nst/test-helpers';

export { newDir, sharedWeights, tempDir } from '@nst/test-helpers';
export const haveShared = sharedAvailable('weights');

/** A small integer hash -> float in [-1, 1): distinct, exactly representable test values. */
export function testValue(layer: number, kind: number, i: number): number {
  let x = (Math.imul(layer + 1, 73856093) ^ Math.imul(kind + 1, 19349663) ^ Math.imul(i + 1, 83492791)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
  return ((x >>> 8) - 8388608) / 8388608;
}

/** Reference HWIO kernel and bias of layer `index` (the "truth" every format test writes and reads back). */
export function referenceLayer(index: number): { name: string; I: number; O: number; kernel: Float32Array; bias: Float32Array } {
  const l = VGG19_LAYERS[index];
  const kernel = Float32Array.from({ length: 9 * l.inChannels * l.outChannels }, (_, i) => testValue(index, 0, i));
  const bias = Float32Array.from({ length: l.outChannels }, (_, i) => testValue(index, 1, i));
  return { name: l.name, I: l.inChannels, O: l.outChannels, kernel, bias };
}

/** Index of element (h, w, i, o) in an HWIO row-major kernel. */
export function hwio(h: number, w: number, i: number, o: number, I: number, O: number): number {
  return ((h * 3 + w) * I + i) * O + o;
}

export function expectSameArray(actual: Float32Array, expected: Float32Array, what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < actual.length; i++)
    if (!Object.is(actual[i], expected[i])) throw new Error(`${what}: index ${i}: ${actual[i]} != ${expected[i]}`);
}

/** Loading `path` fails with a one-line UserError that starts with the path and matches `message`. */
export async function expectUserError(path: string, message: RegExp): Promise<void> {
  const err = await loadWeights(path).then(() => undefined, (e: unknown) => e);
  expect(isUserError(err), String(err)).toBe(true);
  expect((err as Error).message.startsWith(path)).toBe(true);
  expect((err as Error).message).toMatch(message);
  expect((err as Error).message).not.toContain('\n');
}
