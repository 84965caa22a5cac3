/** Test helpers: temporary folders, the shared real weights, small deterministic values. */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect } from 'vitest';
import { isUserError } from '@nst/core';
import { loadWeights } from '@nst/weights';

export const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const sharedWeights = join(repoRoot, '..', 'shared', 'weights', 'vgg19-keras-blocks1-3');
export const haveShared = existsSync(join(sharedWeights, 'model.json'));

export function tempDir(): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'nst-weights-test-'));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export { testValue, referenceLayer } from './reference.js';

/** Index of element (h, w, i, o) in an HWIO row-major kernel. */
export function hwio(h: number, w: number, i: number, o: number, I: number, O: number): number {
  return ((h * 3 + w) * I + i) * O + o;
}

export function expectSameArray(actual: Float32Array, expected: Float32Array, what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < actual.length; i++)
    if (!Object.is(actual[i], expected[i])) throw new Error(`${what}: index ${i}: ${actual[i]} != ${expected[i]}`);
}

/** A fresh temporary folder, removed after the test file. */
const dirs: Array<() => void> = [];
afterAll(() => dirs.forEach((d) => d()));
export function newDir(): string {
  const t = tempDir();
  dirs.push(t.cleanup);
  return t.path;
}

/** Loading `path` fails with a one-line UserError that starts with the path and matches `message`. */
export async function expectUserError(path: string, message: RegExp): Promise<void> {
  const err = await loadWeights(path).then(() => undefined, (e: unknown) => e);
  expect(isUserError(err), String(err)).toBe(true);
  expect((err as Error).message.startsWith(path)).toBe(true);
  expect((err as Error).message).toMatch(message);
  expect((err as Error).message).not.toContain('\n');
}
