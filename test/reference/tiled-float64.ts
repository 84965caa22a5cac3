/**
 * The tiled objective in float64 (packages/core/src/tiling.ts says why it is
 * exact): pass 1 adds each tile core's share of the content loss and of the
 * Gram matrices, pass 2 backpropagates the loss gradient of the core
 * positions only and adds the tiles' pixel gradients. Written on the plain
 * float64 reference, so that the tiling's mathematics is checked apart from
 * any engine; the engines' tiled sessions are tested against the untiled
 * engines the same way.
 */
import {
  coreAtLayer,
  findLayer,
  layerInputSize,
  layerStride,
  type LossValues,
  type Pooling,
  type SessionOptions,
  type Tile,
} from '@nst/core';
import type { WeightSet } from '@nst/core';
import { backward, forward, tensor3, tvLoss, type ReferenceTargets, type Tensor3 } from './vgg-float64.js';

const layerIndex = (name: string) => findLayer(name)!.index;

/** The extended region of `tile` cut out of an image. */
function crop(image: Tensor3, tile: Tile): Tensor3 {
  const { y0, y1, x0, x1 } = tile.extended;
  const out = tensor3(y1 - y0, x1 - x0, image.c);
  for (let y = y0; y < y1; y++)
    out.data.set(image.data.subarray((y * image.w + x0) * image.c, (y * image.w + x1) * image.c), (y - y0) * out.w * image.c);
  return out;
}

/** Calls `visit(tilePosition, imagePosition)` for every core position of conv layer `index` (offsets of the first channel). */
function forCore(
  tile: Tile,
  index: number,
  tileWidth: number,
  full: { height: number; width: number },
  channels: number,
  visit: (t: number, f: number) => void,
): void {
  const s = layerStride(index);
  const core = coreAtLayer(tile, index);
  const oy = tile.extended.y0 / s;
  const ox = tile.extended.x0 / s;
  for (let y = core.y0; y < core.y1; y++)
    for (let x = core.x0; x < core.x1; x++) visit((y * tileWidth + x) * channels, ((oy + y) * full.width + ox + x) * channels);
}

/** Loss and d J / d image of one image (h x w x 3), tile by tile, against the whole image's targets. */
export function referenceTiledItem(
  weights: WeightSet,
  options: Pick<SessionOptions, 'loss' | 'pooling'>,
  targets: ReferenceTargets,
  image: Tensor3,
  tiles: readonly Tile[],
): { losses: LossValues; gradient: Float64Array } {
  const { loss: spec, pooling } = options;
  const last = Math.max(...[...spec.contentLayers, ...spec.styleLayers].map((l) => layerIndex(l.layer)));
  const at = (i: number) => layerInputSize(i, image.h, image.w);
  const channels = (i: number) => weights.layers[i].outChannels;
  const run = (tile: Tile) => forward(weights, pooling as Pooling, crop(image, tile), last);

  // Pass 1: the content loss and the Gram sums (A^T A, not yet divided by N) over every core.
  let content = 0;
  const gramSums = new Map(spec.styleLayers.map((l) => [layerIndex(l.layer), new Float64Array(channels(layerIndex(l.layer)) ** 2)]));
  for (const tile of tiles) {
    const recs = run(tile);
    for (const { layer, weight } of spec.contentLayers) {
      const i = layerIndex(layer);
      const a = recs[i].activation;
      const c = channels(i);
      const scale = 1 / (4 * at(i).height * at(i).width * c);
      const target = targets.content.get(i)!;
      forCore(tile, i, a.w, at(i), c, (t, f) => {
        for (let k = 0; k < c; k++) content += weight * scale * (a.data[t + k] - target[f + k]) ** 2;
      });
    }
    for (const { layer } of spec.styleLayers) {
      const i = layerIndex(layer);
      const a = recs[i].activation;
      const c = channels(i);
      const sums = gramSums.get(i)!;
      forCore(tile, i, a.w, at(i), c, (t) => {
        for (let p = 0; p < c; p++) for (let q = 0; q < c; q++) sums[p * c + q] += a.data[t + p] * a.data[t + q];
      });
    }
  }
  // The whole image's Gram differences, and the style loss they give.
  let style = 0;
  const diffs = new Map<number, Float64Array>();
  for (const { layer, weight } of spec.styleLayers) {
    const i = layerIndex(layer);
    const n = at(i).height * at(i).width;
    const c = channels(i);
    const diff = gramSums.get(i)!.map((g, k) => g / n - targets.style.get(i)![k]);
    for (const d of diff) style += (weight * d * d) / (4 * c * c);
    diffs.set(i, diff);
  }

  // Pass 2: the loss gradient on the core positions only, backpropagated to each tile's pixels and added up.
  const gradient = new Float64Array(image.data.length);
  for (const tile of tiles) {
    const recs = run(tile);
    const gradAct: (Float64Array | undefined)[] = recs.map(() => undefined);
    const grad = (i: number) => (gradAct[i] ??= new Float64Array(recs[i].activation.data.length));
    for (const { layer, weight } of spec.contentLayers) {
      const i = layerIndex(layer);
      const a = recs[i].activation;
      const c = channels(i);
      const scale = (2 * spec.alpha * weight) / (4 * at(i).height * at(i).width * c);
      const target = targets.content.get(i)!;
      const g = grad(i);
      forCore(tile, i, a.w, at(i), c, (t, f) => {
        for (let k = 0; k < c; k++) g[t + k] += scale * (a.data[t + k] - target[f + k]);
      });
    }
    for (const { layer, weight } of spec.styleLayers) {
      const i = layerIndex(layer);
      const a = recs[i].activation;
      const c = channels(i);
      const scale = (spec.beta * weight) / (c * c * at(i).height * at(i).width);
      const diff = diffs.get(i)!;
      const g = grad(i);
      forCore(tile, i, a.w, at(i), c, (t) => {
        for (let q = 0; q < c; q++) {
          let s = 0;
          for (let p = 0; p < c; p++) s += a.data[t + p] * diff[p * c + q];
          g[t + q] += scale * s;
        }
      });
    }
    const tileGradient = backward(weights, pooling as Pooling, recs, gradAct);
    const { y0, x0 } = tile.extended;
    for (let y = 0; y < tileGradient.h; y++)
      for (let x = 0; x < tileGradient.w * 3; x++)
        gradient[((y0 + y) * image.w + x0) * 3 + x] += tileGradient.data[y * tileGradient.w * 3 + x];
  }
  // Smoothness is a sum over neighbouring pixels: the whole image at once.
  const tv = tvLoss(image);
  for (let k = 0; k < gradient.length; k++) gradient[k] += spec.tvWeight * tv.grad[k];
  return { losses: { content, style, tv: tv.loss, total: spec.alpha * content + spec.beta * style + spec.tvWeight * tv.loss }, gradient };
}
