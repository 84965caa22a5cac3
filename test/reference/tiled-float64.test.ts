/**
 * Exact tiling, in float64, on the plain reference: the tiled loss and
 * gradient equal the untiled ones but for the order of summation, at odd
 * sizes with many tiles, with average and max pooling, for the blocks 1-3
 * loss and for the notebook's loss up to conv5_1; and a halo one stride too
 * small is not exact (so the halo the layer table gives is needed).
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LOSS,
  layerStride,
  PREPROCESSING,
  planTiles,
  receptiveMargin,
  relL2,
  Rng,
  tileHalo,
  VGG19_LAYERS,
  type ConvWeights,
  type LossSpec,
  type Pooling,
  type Tile,
  type WeightSet,
} from '@nst/core';
import { referenceTiledItem } from './tiled-float64.js';
import { referenceItem, referenceTargets, tensor3 } from './vgg-float64.js';
import { testImage } from './random-weights.js';

/** He-initialised weights of the VGG-19 layout with every layer's channels divided by `divisor` (the reference is plain loops). */
function narrowWeights(seed: number, numLayers: number, divisor: number): WeightSet {
  const rng = new Rng(seed);
  let inChannels = 3;
  const layers: ConvWeights[] = VGG19_LAYERS.slice(0, numLayers).map((info) => {
    const outChannels = info.outChannels / divisor;
    const kernel = rng.fillNormal(new Float32Array(9 * inChannels * outChannels), Math.sqrt(2 / (9 * inChannels)));
    const bias = rng.fillUniform(new Float32Array(outChannels), -0.05, 0.05);
    const layer = { name: info.name, inChannels, outChannels, kernel, bias };
    inChannels = outChannels;
    return layer;
  });
  return { layers, preprocessing: PREPROCESSING.caffeBgr, source: `narrow:${seed}`, format: 'random' };
}

const BLOCKS_1_3: LossSpec = {
  contentLayers: [{ layer: 'conv3_2', weight: 1 }],
  styleLayers: ['conv1_1', 'conv2_1', 'conv3_1'].map((layer) => ({ layer, weight: 1 / 3 })),
  alpha: 10,
  beta: 40,
  tvWeight: 1e-3,
};

function compare(weights: WeightSet, loss: LossSpec, pooling: Pooling, height: number, width: number, tiles: readonly Tile[]) {
  const options = { loss, pooling, height, width, batch: 1 };
  const image = tensor3(height, width, 3, testImage(1, height * width * 3));
  const content = { height, width, data: testImage(2, height * width * 3) };
  const style = { height: 20, width: 24, data: testImage(3, 20 * 24 * 3) };
  const targets = referenceTargets(weights, options, { content, styles: [{ image: style, weight: 1 }] });
  const whole = referenceItem(weights, options, targets, image);
  const tiled = referenceTiledItem(weights, options, targets, image, tiles);
  return {
    loss: Math.max(
      ...(['content', 'style', 'tv', 'total'] as const).map((k) => Math.abs(tiled.losses[k] - whole.losses[k]) / Math.abs(whole.losses[k])),
    ),
    gradient: relL2(tiled.gradient, whole.gradient),
  };
}

describe('the tile geometry of the layer table', () => {
  it('conv5_1 sees 70 px beyond its cell on each side (a field of 156 px), so its tiles need a halo of 80 and origins on 16', () => {
    expect(receptiveMargin(12)).toBe(70);
    expect(2 * receptiveMargin(12) + layerStride(12)).toBe(156);
    expect(tileHalo(12)).toBe(80);
    expect(layerStride(12)).toBe(16);
    expect(tileHalo(5)).toBe(16); // conv3_2: a margin of 14 on a stride of 4
  });

  it('cores cover the image once, extended regions stay inside it', () => {
    const tiles = planTiles(487, 651, 192, 12);
    expect(tiles).toHaveLength(3 * 4);
    let area = 0;
    for (const { core, extended } of tiles) {
      area += (core.y1 - core.y0) * (core.x1 - core.x0);
      expect(extended.y0 % 16).toBe(0);
      expect(extended.x0 % 16).toBe(0);
      expect([extended.y0, extended.x0].every((v) => v >= 0)).toBe(true);
      expect(extended.y1).toBeLessThanOrEqual(487);
      expect(extended.x1).toBeLessThanOrEqual(651);
    }
    expect(area).toBe(487 * 651);
    expect(() => planTiles(100, 100, 40, 12)).toThrow(/not a positive multiple of 16/);
  });
});

describe('tiled equals untiled (float64 reference)', () => {
  for (const pooling of ['avg', 'max'] as const)
    it(`blocks 1-3 loss, ${pooling} pooling, 45x37 in 30 tiles of 8`, () => {
      const weights = narrowWeights(7, 6, 8);
      const d = compare(weights, BLOCKS_1_3, pooling, 37, 45, planTiles(37, 45, 8, 5));
      console.log(
        `tiled float64, blocks 1-3, ${pooling}: loss rel ${d.loss.toExponential(2)}, gradient rel L2 ${d.gradient.toExponential(2)}`,
      );
      expect(d.loss).toBeLessThan(1e-12);
      expect(d.gradient).toBeLessThan(1e-12);
    });

  it("the notebook's loss up to conv5_1, 150x118 in tiles of 48 (halo 80, clipped)", () => {
    const weights = narrowWeights(8, 13, 16);
    const tiles = planTiles(118, 150, 48, 12);
    expect(tiles.some((t) => t.extended.x1 < 150 || t.extended.x0 > 0)).toBe(true); // some halos are cut by the tile, not the image
    const d = compare(weights, { ...DEFAULT_LOSS, tvWeight: 1e-3 }, 'avg', 118, 150, tiles);
    console.log(`tiled float64, conv5_1: loss rel ${d.loss.toExponential(2)}, gradient rel L2 ${d.gradient.toExponential(2)}`);
    expect(d.loss).toBeLessThan(1e-12);
    expect(d.gradient).toBeLessThan(1e-12);
  });

  it('a halo one stride short of the margin is not exact', () => {
    const weights = narrowWeights(7, 6, 8);
    // Halo 12 instead of 16 for conv3_2 (stride 4): origins still on the stride.
    const short = planTiles(37, 45, 8, 5).map(({ core }) => ({
      core,
      extended: {
        y0: Math.max(0, core.y0 - 12),
        y1: Math.min(37, core.y1 + 12),
        x0: Math.max(0, core.x0 - 12),
        x1: Math.min(45, core.x1 + 12),
      },
    }));
    const d = compare(weights, BLOCKS_1_3, 'avg', 37, 45, short);
    expect(d.gradient).toBeGreaterThan(1e-9);
  });
});
