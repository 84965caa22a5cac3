/**
 * Exact tiling at the sizes (issue 20), on the cpu engine with random
 * full VGG-19 weights: 640x480 in 192-px tiles (3 x 4) with the default loss
 * (nets kept between the passes), and the odd 651x487 with max pooling and with the
 * blocks 1-3 loss. packages/native/test/tiled-suite.ts holds the
 * comparison; cpu-tiled.test.ts runs it at small sizes in the unit project,
 * cuda-tiled-emulated.test.ts on the cuda engine's stand-in. Minutes on 2
 * cores: the e2e project.
 */
import { describe } from 'vitest';
import { DEFAULT_LOSS } from '@nst/core';
import { REDUCED_LOSS } from '@nst/test-helpers';
import { addon, skipReason } from '../packages/native/test/helpers.js';
import { tiledCases } from '../packages/native/test/tiled-suite.js';

describe('exact tiling at 640x480 and 651x487, cpu engine', () => {
  tiledCases(
    'cpu',
    [
      // Not yet 20 Adam iterations here (issue 20 stays open on it): measured, the first loss and
      // gradient agree (3.9e-6, 3.7e-6) but after 20 iterations with nets kept between the passes
      // the images are 1.5e-2 apart and Adam's first moments 0.35, far beyond the summation-order
      // differences the small Adam cases (cpu-tiled.test.ts, cuda-tiled-emulated.test.ts) hold to 1e-3.
      {
        name: 'default loss, nets kept between the passes',
        height: 480,
        width: 640,
        core: 192,
        pooling: 'avg',
        loss: DEFAULT_LOSS,
        adamIterations: 0,
        netBudget: 2 ** 31,
      },
      { name: 'odd size, max pooling', height: 487, width: 651, core: 192, pooling: 'max', loss: DEFAULT_LOSS, adamIterations: 0 },
      { name: 'odd size, blocks 1-3 loss', height: 487, width: 651, core: 192, pooling: 'avg', loss: REDUCED_LOSS, adamIterations: 0 },
      {
        name: 'odd size, default loss, Winograd',
        height: 487,
        width: 651,
        core: 192,
        pooling: 'avg',
        loss: DEFAULT_LOSS,
        adamIterations: 0,
        winograd: true,
      },
    ],
    addon ? '' : skipReason,
  );
});
