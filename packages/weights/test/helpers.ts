/** Test helpers of the weight readers: small deterministic values and expectations. */
import { expect } from 'vitest';
import { isUserError } from '@nst/core';
import { loadWeights } from '@nst/weights';
import { sharedAvailable } from '@nst/test-helpers';

export { newDir, sharedWeights, tempDir } from '@nst/test-helpers';
export const haveShared = sharedAvailable('weights');

export { referenceLayer } from './reference.js';

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
  const err = await loadWeights(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isUserError(err), String(err)).toBe(true);
  expect((err as Error).message.startsWith(path)).toBe(true);
  expect((err as Error).message).toMatch(message);
  expect((err as Error).message).not.toContain('\n');
}
