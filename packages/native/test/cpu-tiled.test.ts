/**
 * Exact tiling on the cpu engine at small sizes (tiled-suite.ts): several
 * tiles per side, the default loss, an odd size with max pooling and the
 * content targets recomputed per tile, the blocks 1-3 loss (a smaller
 * halo), Adam iterations, nets kept between the passes; direct
 * convolutions, and once Winograd's (TiledCase.winograd). The sizes
 * (640x480, 651x487) run in the e2e project: test/tiled-exactness.test.ts.
 */
import { describe } from 'vitest';
import { DEFAULT_LOSS } from '@nst/core';
import { REDUCED_LOSS } from '@nst/test-helpers';
import { addon, skipReason } from './helpers.js';
import { tiledCases } from './tiled-suite.js';

describe('exact tiling, cpu engine', () => {
  tiledCases(
    'cpu',
    [
      {
        name: 'default loss, nets kept between the passes',
        height: 160,
        width: 208,
        core: 64,
        pooling: 'avg',
        loss: DEFAULT_LOSS,
        adamIterations: 2,
        netBudget: 2 ** 30,
      },
      {
        name: 'odd size, max pooling, content recomputed per tile',
        height: 177,
        width: 211,
        core: 48,
        pooling: 'max',
        loss: { ...DEFAULT_LOSS, tvWeight: 1e-3 },
        adamIterations: 0,
        contentTargets: 'recompute',
      },
      {
        name: 'blocks 1-3 loss',
        height: 131,
        width: 157,
        core: 32,
        pooling: 'avg',
        loss: REDUCED_LOSS,
        adamIterations: 5,
        minTilesPerSide: 4,
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
      {
        name: 'default loss, Winograd convolutions',
        height: 160,
        width: 208,
        core: 64,
        pooling: 'avg',
        loss: DEFAULT_LOSS,
        adamIterations: 0,
        winograd: true,
      },
    ],
    addon ? '' : skipReason,
  );
});
