/**
 * Hostile weight files, by class: declared sizes bounded before use (the
 * structural bombs of bombs.ts, each failing fast with a one-line error),
 * non-regular files refused before reading, absurd preprocessing values, an
 * unwritable cache folder. Every file is made by the test.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isUserError } from '@nst/core';
import { loadWeights, WeightsError } from '@nst/weights';
import { allBombs, writeBomb } from './bombs.js';
import { newDir } from './helpers.js';

const scratch = newDir();
const bombs = await allBombs(scratch);

/** Loads `path`; returns the error, which must be a one-line WeightsError naming the path. */
async function loadError(path: string): Promise<WeightsError> {
  const err = await loadWeights(path).then(() => undefined, (e: unknown) => e);
  expect(err, `${path} loaded`).toBeInstanceOf(WeightsError);
  const e = err as WeightsError;
  expect(isUserError(e)).toBe(true);
  expect(e.message.startsWith(path), e.message).toBe(true);
  expect(e.message).not.toContain('\n');
  expect(e.path).toBe(path);
  return e;
}

describe('declared counts and sizes are bounded before any allocation or loop', () => {
  for (const bomb of bombs)
    it(`${bomb.format}: ${bomb.name} fails fast with a clear error`, async () => {
      const dir = join(scratch, bomb.name.replace(/[^A-Za-z0-9]+/g, '-'));
      mkdirSync(dir, { recursive: true });
      const path = writeBomb(bomb, dir);
      const heapBefore = process.memoryUsage().heapUsed;
      const t0 = performance.now();
      const e = await loadError(path);
      const ms = performance.now() - t0;
      expect(e.message).toMatch(bomb.expect);
      expect(ms, `${bomb.name} took ${ms.toFixed(0)} ms`).toBeLessThan(5000);
      // No bomb may leave more than 256 MB of heap behind (the file's whole budget is 512 MiB, mostly outside the heap).
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(256 << 20);
    });
});
