import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '@nst/core';
import { fuzzCorpora, runCase } from './fuzz-lib.js';
import { tempDir } from './helpers.js';

/** Mutation cases per format, after its bombs (bench/fuzz-weights.ts runs 100,000 in all). */
const CASES = 50;
const { path: tmp, cleanup } = tempDir();
afterAll(() => cleanup());
const corpora = await fuzzCorpora(join(tmp, 'corpus'));

describe('mutated files and structural bombs (a fuzz sample)', () => {
  for (const corpus of corpora)
    it(`${corpus.seed.format}: its ${corpus.bombs.length} bombs and ${CASES} mutated files load or fail with a one-line error naming the file`, async () => {
      const rng = new Rng(1234 + corpora.indexOf(corpus));
      const crashes: string[] = [];
      const counts = { loaded: 0, 'user-error': 0, crash: 0 };
      const total = corpus.bombs.length + CASES;
      let slowest = 0;
      // A case that hangs ends in the test's timeout.
      for (let i = 0; i < total; i++) {
        const r = await runCase(corpus, i, join(tmp, corpus.seed.format), rng);
        counts[r.outcome]++;
        if (r.outcome === 'crash') crashes.push(`case ${i} (${r.kind}): ${r.message}`);
        slowest = Math.max(slowest, r.ms);
      }
      console.log(`${corpus.seed.format}: ${JSON.stringify(counts)}, slowest case ${slowest.toFixed(0)} ms`);
      expect(crashes.slice(0, 3)).toEqual([]);
      // The mutations must actually exercise the error paths, and every bomb must fail.
      expect(counts['user-error']).toBeGreaterThanOrEqual(corpus.bombs.length + CASES / 4);
    });
});
