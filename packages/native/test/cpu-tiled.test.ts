/**
 * Exact tiling on the cpu engine at small sizes (tiled-suite.ts), for every
 * save: the blocks 1-3 loss (a smaller halo, seconds) with several tiles per
 * side, Adam iterations, nets kept between the passes, an odd size with max
 * pooling and the content targets recomputed per tile, and video's temporal
 * term. The default loss (the full network: the 80-px halo, Winograd's
 * convolutions) and the sizes take minutes on 2 cores: the e2e
 * project, test/tiled-exactness.test.ts.
 */
import { describe } from 'vitest';
import { REDUCED_LOSS } from '@nst/test-helpers';
import { addon, skipReason } from './helpers.js';
import { tiledCases } from './tiled-suite.js';

describe('exact tiling, cpu engine', () => {
  tiledCases(
    'cpu',
    [
      {
        name: 'blocks 1-3 loss, odd size, max pooling, content recomputed per tile',
        height: 101,
        width: 115,
        core: 32,
        pooling: 'max',
        loss: { ...REDUCED_LOSS, tvWeight: 1e-3 },
        adamIterations: 0,
        contentTargets: 'recompute',
        minTilesPerSide: 3,
      },
      {
        name: 'blocks 1-3 loss, nets kept between the passes',
        height: 131,
        width: 157,
        core: 32,
        pooling: 'avg',
        loss: REDUCED_LOSS,
        adamIterations: 5,
        minTilesPerSide: 4,
        netBudget: 2 ** 30,
      },
      {
        name: "blocks 1-3 loss and video's temporal term",
        height: 67,
        width: 75,
        core: 16,
        pooling: 'avg',
        loss: { ...REDUCED_LOSS, temporalWeight: 1e3 },
        adamIterations: 2,
        minTilesPerSide: 4,
      },
    ],
    addon ? '' : skipReason,
  );
});
