import type { WeightSet } from '@nst/core';
import { resolveDefaultWeights } from './cache.js';
import { EMBEDDED_SOURCE } from './embedded.js';
import { ensureDefaultWeights, WEIGHT_SOURCES } from './fetch.js';
import { loadWeights } from './load.js';

/**
 * The weights of every command that renders (render, batch, worker):
 * `path` (--weights), else NST_WEIGHTS or the installed full set, else
 * (`fetch`: --yes) the full set fetched now, else the built-in blocks 1-3,
 * saying in one line what the full network adds. Jobs then take their loss
 * layers from the set where they name none (withWeightDefaults in @nst/job).
 */
export async function chooseWeights(options: { path?: string; fetch?: boolean }, info: (line: string) => void): Promise<WeightSet> {
  if (options.path) return loadWeights(options.path);
  const installed = await resolveDefaultWeights();
  if (installed || options.fetch) return loadWeights(installed ?? (await ensureDefaultWeights({ yes: true, log: info })));
  info(
    `weights: no full VGG-19 installed, using the built-in blocks 1-3; the full network gives the notebook's result: nst weights fetch (${WEIGHT_SOURCES[0].megabytes} MB)`,
  );
  return loadWeights(EMBEDDED_SOURCE);
}
