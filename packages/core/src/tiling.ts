import { VGG19_LAYERS } from './vgg.js';

/*
 * Exact tiling of the loss (issue 20). The loss is a sum over the positions
 * of each loss layer (content) or a function of Gram matrices that are sums
 * over positions (style), so it can be computed tile by tile and come out
 * equal to the untiled loss and gradient, but for the order of summation:
 *
 * - Tiles' cores partition the image; their origins are multiples of the
 *   deepest loss layer's stride (16 at conv5_1), so every pooling window
 *   falls where it falls in the whole image.
 * - Each tile is rendered with a halo at least the receptive-field margin of
 *   that layer (the image pixels beyond an activation's own cell that can
 *   change it), clipped at the image's border, where the tile pads as the
 *   whole image does. Every activation a core activation depends on then
 *   lies wholly inside the extended tile, so it is exact.
 * - Pass 1 adds each core's share to the content loss and to the Gram
 *   matrices; pass 2 puts the loss gradient on the core positions only (zero
 *   in the halo) and backpropagates it to the tile's pixels, and the tiles'
 *   pixel gradients add up to the whole image's.
 */

/** A rectangle of pixels (or of a layer's positions): rows y0..y1-1, columns x0..x1-1. */
export interface Rect {
  readonly y0: number;
  readonly y1: number;
  readonly x0: number;
  readonly x1: number;
}

/** One tile: the core it accounts for, and the extended region rendered for it (core plus halo, within the image). */
export interface Tile {
  readonly core: Rect;
  readonly extended: Rect;
}

/** Image pixels per position of conv layer `index` (a power of two: the poolings before it). */
export function layerStride(index: number): number {
  let stride = 1;
  for (let i = 0; i < index; i++) if (VGG19_LAYERS[i].poolAfter) stride *= 2;
  return stride;
}

/**
 * How many image pixels beyond its own cell (the `stride` pixels a position
 * stands for) can change an activation of conv layer `index`, on each side:
 * each 3x3 convolution reaches one position further at its layer's stride;
 * a 2x2 pooling adds nothing beyond the cell it covers. conv5_1: 70.
 */
export function receptiveMargin(index: number): number {
  let margin = 0;
  for (let i = 0; i <= index; i++) margin += layerStride(i);
  return margin;
}

/** The halo a tile needs for a loss that reaches conv layer `deepest`: the margin rounded up to the layer's stride. conv5_1: 80. */
export function tileHalo(deepest: number): number {
  const stride = layerStride(deepest);
  return Math.ceil(receptiveMargin(deepest) / stride) * stride;
}

/**
 * Tiles of `core` x `core` pixels (the last ones in a row or column
 * shorter) covering a height x width image, each extended by the halo of
 * the deepest loss layer and clipped at the image. `core` must be a
 * multiple of that layer's stride.
 */
export function planTiles(height: number, width: number, core: number, deepest: number): Tile[] {
  const stride = layerStride(deepest);
  if (!Number.isInteger(core) || core <= 0 || core % stride !== 0)
    throw new Error(`planTiles: the core ${core} is not a positive multiple of ${stride}`);
  const halo = tileHalo(deepest);
  const tiles: Tile[] = [];
  for (let y0 = 0; y0 < height; y0 += core)
    for (let x0 = 0; x0 < width; x0 += core) {
      const c = { y0, y1: Math.min(height, y0 + core), x0, x1: Math.min(width, x0 + core) };
      tiles.push({
        core: c,
        extended: {
          y0: Math.max(0, c.y0 - halo),
          y1: Math.min(height, c.y1 + halo),
          x0: Math.max(0, c.x0 - halo),
          x1: Math.min(width, c.x1 + halo),
        },
      });
    }
  return tiles;
}

/**
 * A tile's core in the positions of conv layer `index`, relative to the
 * extended tile's own positions at that layer. Origins are multiples of the
 * layer's stride; an end at the image's border rounds up, as the image's
 * own pooling does (an odd size n gives ceil(n / 2)).
 */
export function coreAtLayer(tile: Tile, index: number): Rect {
  const s = layerStride(index);
  const { core, extended } = tile;
  return {
    y0: (core.y0 - extended.y0) / s,
    y1: Math.ceil((core.y1 - extended.y0) / s),
    x0: (core.x0 - extended.x0) / s,
    x1: Math.ceil((core.x1 - extended.x0) / s),
  };
}

/** The sizes of the tiles' extended regions, each once, largest first (a tile session builds a net per size). */
export function tileShapes(tiles: readonly Tile[]): { height: number; width: number }[] {
  const seen = new Map<string, { height: number; width: number }>();
  for (const { extended: e } of tiles) seen.set(`${e.y1 - e.y0}x${e.x1 - e.x0}`, { height: e.y1 - e.y0, width: e.x1 - e.x0 });
  return [...seen.values()].sort((a, b) => b.height * b.width - a.height * a.width);
}

/**
 * The tiles grouped by the size of their extended region, largest first,
 * each group in reading order: pass 1's order (a tile session then changes
 * nets as few times as there are sizes); pass 2 runs it backwards, so that
 * the tiles forwarded last, whose activations a session still holds, come first.
 */
export function orderTiles(tiles: readonly Tile[]): Tile[] {
  const area = (t: Tile) => (t.extended.y1 - t.extended.y0) * (t.extended.x1 - t.extended.x0);
  const key = (t: Tile) => `${t.extended.y1 - t.extended.y0}x${t.extended.x1 - t.extended.x0}`;
  const first = new Map<string, number>();
  tiles.forEach((t, i) => first.set(key(t), Math.min(first.get(key(t)) ?? i, i)));
  return [...tiles].sort((a, b) => area(b) - area(a) || first.get(key(a))! - first.get(key(b))!);
}

/**
 * The core sizes worth trying for an image (largest first): the smallest
 * multiple of the deepest layer's stride that covers each side in n tiles,
 * for every n; between two of them only the halo's share grows.
 */
export function coreCandidates(height: number, width: number, deepest: number, smallest = layerStride(deepest)): number[] {
  const stride = layerStride(deepest);
  const cores = new Set<number>();
  for (const side of [height, width])
    for (let n = 1; n <= Math.ceil(side / stride); n++) {
      const core = Math.ceil(Math.ceil(side / n) / stride) * stride;
      if (core >= smallest) cores.add(core);
    }
  return [...cores].sort((a, b) => b - a);
}
