/**
 * Exact tiling on the cuda engine, run on its CPU stand-in
 * (NST_CUDA_EMULATION=1): tiled-suite.ts at the stand-in's small sizes
 * (the e2e project: the stand-in is slow). Several tiles per side, the
 * default loss, max pooling at an odd size with the content recomputed per
 * tile, the blocks 1-3 loss with Adam iterations.
 */
import './use-cuda-emulation.js';
import { describe } from 'vitest';
import { DEFAULT_LOSS } from '@nst/core';
import { REDUCED_LOSS } from '@nst/test-helpers';
import { cudaUnavailableReason } from './helpers.js';
import { tiledCases } from './tiled-suite.js';

const noGpu = cudaUnavailableReason();
// The stand-in is built by npm ci: under CI its absence is a failure, never a skip.
if (noGpu && process.env.CI === 'true') throw new Error(`the emulated cuda engine cannot run under CI: ${noGpu}`);

describe('exact tiling, cuda engine (CPU stand-in)', () => {
  tiledCases(
    'cuda',
    [
      {
        name: 'default loss, nets kept between the passes',
        height: 112,
        width: 128,
        core: 32,
        pooling: 'avg',
        loss: DEFAULT_LOSS,
        adamIterations: 0,
        netBudget: 2 ** 30,
      },
      {
        name: 'odd size, max pooling, content recomputed per tile',
        height: 101,
        width: 115,
        core: 32,
        pooling: 'max',
        loss: { ...DEFAULT_LOSS, tvWeight: 1e-3 },
        adamIterations: 0,
        contentTargets: 'recompute',
      },
      {
        name: 'blocks 1-3 loss',
        height: 67,
        width: 75,
        core: 16,
        pooling: 'avg',
        loss: REDUCED_LOSS,
        adamIterations: 3,
        minTilesPerSide: 4,
      },
    ],
    noGpu,
  );
});
