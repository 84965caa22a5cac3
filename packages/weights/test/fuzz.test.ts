import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '@nst/core';
import { fuzzSeeds, runCase } from './fuzz-lib.js';
import { tempDir } from './helpers.js';

const CASES = 300;
const { path: tmp, cleanup } = tempDir();
afterAll(() => cleanup());
const seeds = await fuzzSeeds(join(tmp, 'seeds'));

describe('mutated files (a fuzz sample; bench/fuzz-weights.ts runs 10,000+ per format)', () => {
  for (const seed of seeds)
    it(`${seed.format}: ${CASES} truncated, bit-flipped and random files load or fail with a one-line error naming the file`, async () => {
      const rng = new Rng(1234 + seeds.indexOf(seed));
      const crashes: string[] = [];
      const counts = { loaded: 0, 'user-error': 0, crash: 0 };
      for (let i = 0; i < CASES; i++) {
        const r = await runCase(seed, join(tmp, seed.format), rng);
        counts[r.outcome]++;
        if (r.outcome === 'crash') crashes.push(`case ${i} (${r.kind}): ${r.message}`);
        expect(r.ms, `case ${i} (${r.kind}) took ${r.ms} ms`).toBeLessThan(5000);
      }
      console.log(`${seed.format}: ${JSON.stringify(counts)}`);
      expect(crashes.slice(0, 3)).toEqual([]);
      // The mutations must actually exercise the error paths.
      expect(counts['user-error']).toBeGreaterThan(CASES / 4);
    });
});
