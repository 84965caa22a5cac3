/**
 * Exact tiling with the full network's loss (the default: an 80-px halo) on
 * the cpu engine at 208x160 and 211x177, several tiles per side
 * (packages/native/test/tiled-suite.ts): nets kept between the passes with
 * Adam iterations, an odd size with max pooling and the content targets
 * recomputed per tile, and Winograd's convolutions (TiledCase.winograd).
 * About a minute on 2 cores, so the e2e project; the blocks 1-3 cases run
 * for every save (packages/native/test/cpu-tiled.test.ts), the sizes
 * in tiled-exactness.test.ts.
 */
import { describe } from 'vitest';
import { DEFAULT_LOSS } from '@nst/core';
import { addon, skipReason } from '../packages/native/test/helpers.js';
import { tiledCases } from '../packages/native/test/tiled-suite.js';

describe('exact tiling with the full network, cpu engine', () => {
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
