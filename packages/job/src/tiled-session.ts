import {
  adamUpdate,
  deepestLayerIndex,
  findLayer,
  layerInputSize,
  orderTiles,
  planTiles,
  VGG19_LAYERS,
  type AdamConfig,
  type Backend,
  type IterateOptions,
  type LossValues,
  type Rect,
  type Session,
  type SessionOptions,
  type Targets,
  type Tile,
  type TileContent,
  type TileGeometry,
  type TileSession,
  type TemporalTarget,
  type TileStats,
  type VectorOps,
} from '@nst/core';

/*
 * Exact tiling (issue 20; packages/core/src/tiling.ts has the mathematics):
 * a Session (packages/core/src/backend.ts) whose images, gradient and Adam
 * moments live on the host, and whose network runs tile by tile in the
 * backend's TileSession. Each evaluation is
 *   pass 1: every tile forwarded, its core's Gram sums added (float64) into
 *           the whole image's, its share of the content loss added;
 *   then:   the style loss and, per style layer, the coefficients
 *           beta w (Ghat - T) / (C^2 N) of the whole image;
 *   pass 2: every tile, in reverse order (the last forwarded first: the
 *           session may still hold their activations), backpropagated from
 *           its core's loss gradient; the tiles' pixel gradients added;
 *   and the smoothness term on the host, over the whole image (float64 sums).
 * The loss and gradient equal the untiled ones but for the order of
 * summation; runOptimisation, L-BFGS, checkpoints and resume work unchanged.
 */

export interface TiledSessionOptions extends SessionOptions {
  /** The tiles' core size: a multiple of the deepest loss layer's stride (16 up to conv5_1). */
  readonly core: number;
  /**
   * 'keep': each tile's content targets (the content image's activations at
   * its core) on the host, float32, computed once; 'recompute': the content
   * image kept instead, each tile's targets forwarded from it when the tile
   * is (one more forward per tile, a fraction of the memory).
   */
  readonly contentTargets: 'keep' | 'recompute';
  /** Bytes of nets the tile session may keep tiles' activations in between the passes. */
  readonly netBudget: number;
}

/** What a tiled session is made of, for the plan and the user. */
export interface TiledLayout {
  readonly tiles: readonly Tile[];
  /** The largest extended region, over the image's tiles and the style images'. */
  readonly tileHeight: number;
  readonly tileWidth: number;
}

interface LayerTerm {
  readonly index: number;
  readonly channels: number;
  readonly weight: number;
}

/** Tiles of an image of height x width: one (the whole image) when it is no larger than the core. */
export function imageTiles(height: number, width: number, core: number, deepest: number): Tile[] {
  return orderTiles(planTiles(height, width, core, deepest));
}

/** The tiles of the output and of each style image, and the largest extended region among them. */
export function tiledLayout(
  options: Pick<TiledSessionOptions, 'height' | 'width' | 'core' | 'loss'>,
  styleSizes: readonly { readonly height: number; readonly width: number }[],
): TiledLayout {
  const deepest = deepestLayerIndex(options.loss);
  const tiles = imageTiles(options.height, options.width, options.core, deepest);
  let tileHeight = 0;
  let tileWidth = 0;
  const grow = (list: readonly Tile[]) => {
    for (const { extended: e } of list) {
      tileHeight = Math.max(tileHeight, e.y1 - e.y0);
      tileWidth = Math.max(tileWidth, e.x1 - e.x0);
    }
  };
  grow(tiles);
  for (const s of styleSizes) grow(imageTiles(s.height, s.width, options.core, deepest));
  return { tiles, tileHeight, tileWidth };
}

/** A Session run tile by tile on `backend` (which must have createTileSession). */
export function createTiledSession(backend: Backend, options: TiledSessionOptions): TiledSession {
  if (!backend.createTileSession) throw new Error(`the ${backend.name} backend cannot render tile by tile`);
  return new TiledSession(backend, options);
}

export class TiledSession implements Session {
  private readonly tiles: readonly Tile[];
  private readonly deepest: number;
  private readonly style: readonly LayerTerm[];
  private readonly content: readonly LayerTerm[];
  private readonly pixels: number;
  private session: TileSession | undefined;
  private x: Float32Array | undefined;
  private m: Float32Array | undefined;
  private v: Float32Array | undefined;
  private g: Float32Array | undefined;
  /** Per item and style layer: the target sum_k w_k Ghat(style_k), C x C. */
  private styleTargets: Float64Array[][] = [];
  /** 'keep': per item and tile, the core's content targets per content layer. */
  private contentTargets: Float32Array[][][] = [];
  /** 'recompute': per item, the content image. */
  private contentImages: Float32Array[] = [];
  /** Video: per item, the temporal term's target (absent: none for that item). */
  private temporal: (TemporalTarget | undefined)[] = [];
  private evaluations = 0;
  // Scratch, reused tile after tile (calls are awaited one at a time).
  private tilePixels = new Float32Array(0);
  private tileContent = new Float32Array(0);
  private tileGradient = new Float32Array(0);
  private readonly grams: Float32Array[];

  constructor(
    private readonly backend: Backend,
    readonly options: TiledSessionOptions,
  ) {
    this.deepest = deepestLayerIndex(options.loss);
    this.tiles = imageTiles(options.height, options.width, options.core, this.deepest);
    const term = (l: { layer: string; weight: number }): LayerTerm => {
      const index = findLayer(l.layer)!.index;
      return { index, channels: VGG19_LAYERS[index].outChannels, weight: l.weight };
    };
    this.style = options.loss.styleLayers.map(term);
    this.content = options.loss.contentLayers.map(term);
    this.pixels = options.height * options.width * 3;
    this.grams = this.style.map((l) => new Float32Array(l.channels * l.channels));
  }

  /** The tiles of the image, in pass 1's order. */
  get layout(): readonly Tile[] {
    return this.tiles;
  }

  get vectorOps(): VectorOps | undefined {
    return this.session?.vectorOps;
  }

  /** What the tile session did so far (undefined before setTargets). */
  stats(): TileStats | undefined {
    return this.session?.stats();
  }

  async setTargets(targets: readonly Targets[]): Promise<void> {
    const { height, width, batch } = this.options;
    if (targets.length !== batch) throw new Error(`setTargets: got ${targets.length} targets for a batch of ${batch}`);
    for (const t of targets) {
      if (t.content.height !== height || t.content.width !== width)
        throw new Error("setTargets: the content image must be the session's size");
      if (t.styles.length === 0) throw new Error('setTargets: each batch item needs at least one style image');
    }
    const layout = tiledLayout(
      this.options,
      targets.flatMap((t) => t.styles.map((s) => s.image)),
    );
    this.session?.dispose();
    this.session = await this.backend.createTileSession!({
      tileHeight: layout.tileHeight,
      tileWidth: layout.tileWidth,
      pooling: this.options.pooling,
      loss: this.options.loss,
      netBudget: this.options.netBudget,
    });
    const extent = layout.tileHeight * layout.tileWidth * 3;
    this.tilePixels = new Float32Array(extent);
    this.tileGradient = new Float32Array(extent);
    if (this.options.contentTargets === 'recompute') this.tileContent = new Float32Array(extent);

    this.styleTargets = [];
    this.contentTargets = [];
    this.contentImages = [];
    this.temporal = (this.options.loss.temporalWeight ?? 0) > 0 ? targets.map((t) => t.temporal) : [];
    for (const t of targets) {
      this.styleTargets.push(await this.styleTargetsOf(t.styles));
      if (this.content.length === 0) continue;
      if (this.options.contentTargets === 'recompute') this.contentImages.push(t.content.data);
      else {
        const perTile: Float32Array[][] = [];
        for (const tile of this.tiles) {
          const out = this.content.map((l) => new Float32Array(this.coreFloats(tile, l)));
          await this.session.contentActivations(this.geometry(tile), this.crop(t.content.data, width, tile.extended, this.tilePixels), out);
          perTile.push(out);
        }
        this.contentTargets.push(perTile);
      }
    }
  }

  /** sum_k w_k Ghat(style_k) per style layer: each style image's Gram sums over its tiles, divided by its own N. */
  private async styleTargetsOf(styles: Targets['styles']): Promise<Float64Array[]> {
    const session = this.session!;
    const out = this.style.map((l) => new Float64Array(l.channels * l.channels));
    if (this.style.length === 0) return out;
    for (const { image, weight } of styles) {
      const sums = this.style.map((l) => new Float64Array(l.channels * l.channels));
      for (const tile of imageTiles(image.height, image.width, this.options.core, this.deepest)) {
        const geometry = { imageHeight: image.height, imageWidth: image.width, core: tile.core, extended: tile.extended };
        await session.gramSums(geometry, this.crop(image.data, image.width, tile.extended, this.tilePixels), this.grams);
        this.style.forEach((_, l) => addInto(sums[l], this.grams[l]));
      }
      this.style.forEach((l, k) => {
        const n = positions(l.index, image.height, image.width);
        const target = out[k];
        for (let i = 0; i < target.length; i++) target[i] += (weight * sums[k][i]) / n;
      });
    }
    return out;
  }

  async setImages(images: Float32Array): Promise<void> {
    const n = this.options.batch * this.pixels;
    if (images.length !== n) throw new Error(`setImages: expected ${n} values, got ${images.length}`);
    this.x ??= new Float32Array(n);
    this.x.set(images);
    this.m ??= new Float32Array(n);
    this.v ??= new Float32Array(n);
    this.m.fill(0);
    this.v.fill(0);
  }

  async iterate(options: IterateOptions): Promise<LossValues[]> {
    this.checkReady('iterate');
    const steps = options.stepSizes.length;
    // Without updates only the loss is needed: pass 1 alone.
    const first = await this.evaluateAll(steps > 0);
    for (let k = 0; k < steps; k++) {
      if (k > 0) await this.evaluateAll(true);
      this.adam(options.stepSizes[k], options.adam);
      options.onProgress?.(k + 1);
    }
    return first;
  }

  async lossAndGradient(): Promise<{ losses: LossValues[]; gradient: Float32Array }> {
    this.checkReady('lossAndGradient');
    const losses = await this.evaluateAll(true);
    return { losses, gradient: this.g!.slice() };
  }

  async readImages(): Promise<Float32Array> {
    this.checkReady('readImages', false);
    return this.x!.slice();
  }

  async readOptimizerState(): Promise<{ m: Float32Array; v: Float32Array }> {
    this.checkReady('readOptimizerState', false);
    return { m: this.m!.slice(), v: this.v!.slice() };
  }

  async writeOptimizerState(state: { m: Float32Array; v: Float32Array }): Promise<void> {
    this.checkReady('writeOptimizerState', false);
    this.m!.set(state.m);
    this.v!.set(state.v);
  }

  dispose(): void {
    this.session?.dispose();
    this.session = undefined;
    this.x = this.m = this.v = this.g = undefined;
    this.contentTargets = [];
    this.contentImages = [];
  }

  private checkReady(op: string, targets = true): void {
    if (targets && !this.session) throw new Error(`${op}: call setTargets first`);
    if (!this.x) throw new Error(`${op}: call setImages first`);
  }

  private adam(lrT: number, config: AdamConfig): void {
    const update = this.session?.adamUpdate?.bind(this.session);
    if (update) update(this.x!, this.m!, this.v!, this.g!, lrT, config);
    else adamUpdate(this.x!, this.g!, this.m!, this.v!, lrT, config);
  }

  private async evaluateAll(gradient: boolean): Promise<LossValues[]> {
    if (gradient) this.g ??= new Float32Array(this.options.batch * this.pixels);
    const losses: LossValues[] = [];
    for (let b = 0; b < this.options.batch; b++) losses.push(await this.evaluate(b, gradient));
    return losses;
  }

  /** The loss of item b and, with `gradient`, its gradient into g. */
  private async evaluate(b: number, gradient: boolean): Promise<LossValues> {
    const session = this.session!;
    const { height, width, loss: spec } = this.options;
    const x = this.x!.subarray(b * this.pixels, (b + 1) * this.pixels);
    const id = ++this.evaluations;
    const tag = (i: number) => id * this.tiles.length + i + 1;

    // Pass 1.
    let content = 0;
    const sums = this.style.map((l) => new Float64Array(l.channels * l.channels));
    for (let i = 0; i < this.tiles.length; i++) {
      const tile = this.tiles[i];
      const pixels = this.crop(x, width, tile.extended, this.tilePixels);
      content += await session.forward(this.geometry(tile), pixels, this.contentOf(b, i), tag(i), this.grams);
      this.style.forEach((_, l) => addInto(sums[l], this.grams[l]));
    }

    // The whole image's style loss and coefficients.
    let style = 0;
    const coefficients = this.style.map((l, k) => {
      const n = positions(l.index, height, width);
      const c2 = l.channels * l.channels;
      const target = this.styleTargets[b][k];
      const coef = new Float32Array(c2);
      let squares = 0;
      for (let i = 0; i < c2; i++) {
        const d = sums[k][i] / n - target[i];
        squares += d * d;
        coef[i] = (spec.beta * l.weight * d) / (c2 * n);
      }
      style += (l.weight * squares) / (4 * c2);
      return coef;
    });

    // Pass 2.
    const g = gradient ? this.g!.subarray(b * this.pixels, (b + 1) * this.pixels) : undefined;
    if (g) {
      g.fill(0);
      for (let i = this.tiles.length - 1; i >= 0; i--) {
        const tile = this.tiles[i];
        const e = tile.extended;
        const pixels = this.crop(x, width, e, this.tilePixels);
        const tileGradient = this.tileGradient.subarray(0, pixels.length);
        await session.backward(this.geometry(tile), pixels, this.contentOf(b, i), tag(i), coefficients, tileGradient);
        addTile(g, width, e, tileGradient);
      }
    }
    const tv = smoothness(x, height, width, g, spec.tvWeight);
    const losses = { content, style, tv, total: spec.alpha * content + spec.beta * style + spec.tvWeight * tv };
    const temporalWeight = spec.temporalWeight ?? 0;
    if (temporalWeight === 0) return losses;
    const target = this.temporal[b];
    const temporal = target ? temporalTerm(x, target, g, temporalWeight) : 0;
    return { ...losses, temporal, total: losses.total + temporalWeight * temporal };
  }

  private contentOf(b: number, tile: number): TileContent {
    if (this.content.length === 0) return { targets: [] };
    if (this.options.contentTargets === 'keep') return { targets: this.contentTargets[b][tile] };
    return { pixels: this.crop(this.contentImages[b], this.options.width, this.tiles[tile].extended, this.tileContent) };
  }

  private geometry(tile: Tile): TileGeometry {
    return { imageHeight: this.options.height, imageWidth: this.options.width, core: tile.core, extended: tile.extended };
  }

  /** Floats of a tile's core at content layer l: its positions there times C. */
  private coreFloats(tile: Tile, l: LayerTerm): number {
    const s = 2 ** poolsBefore(l.index);
    const rows = Math.ceil((tile.core.y1 - tile.extended.y0) / s) - (tile.core.y0 - tile.extended.y0) / s;
    const cols = Math.ceil((tile.core.x1 - tile.extended.x0) / s) - (tile.core.x0 - tile.extended.x0) / s;
    return rows * cols * l.channels;
  }

  /** The rectangle `r` of an image `width` wide (HWC) into the start of `into`, as a view of its exact size. */
  private crop(image: Float32Array, width: number, r: Rect, into: Float32Array): Float32Array {
    const row = (r.x1 - r.x0) * 3;
    const out = into.subarray(0, (r.y1 - r.y0) * row);
    for (let y = r.y0; y < r.y1; y++) out.set(image.subarray((y * width + r.x0) * 3, (y * width + r.x1) * 3), (y - r.y0) * row);
    return out;
  }
}

function poolsBefore(index: number): number {
  let n = 0;
  for (let i = 0; i < index; i++) if (VGG19_LAYERS[i].poolAfter) n++;
  return n;
}

/** Positions of conv layer `index` in an image of height x width (the N of its normalisation). */
function positions(index: number, height: number, width: number): number {
  const s = layerInputSize(index, height, width);
  return s.height * s.width;
}

function addInto(sum: Float64Array, part: Float32Array): void {
  for (let i = 0; i < sum.length; i++) sum[i] += part[i];
}

/** Adds a tile's pixel gradient (its extended region's) into the whole image's. */
function addTile(g: Float32Array, width: number, e: Rect, tile: Float32Array): void {
  const row = (e.x1 - e.x0) * 3;
  for (let y = e.y0; y < e.y1; y++) {
    const at = (y * width + e.x0) * 3;
    const from = (y - e.y0) * row;
    for (let k = 0; k < row; k++) g[at + k] += tile[from + k];
  }
}

/**
 * Video's J_temporal (core's loss.ts) of an image (HWC) against its target,
 * with float64 sums, and, when `g` is given, adds weight * d J_temporal / d x:
 * a pixel-space term like J_tv, exact on the whole image at once.
 */
function temporalTerm(x: Float32Array, target: TemporalTarget, g: Float32Array | undefined, weight: number): number {
  const omega = target.image.data;
  const d = x.length;
  let sum = 0;
  for (let p = 0; p < target.weights.length; p++) {
    const c = target.weights[p];
    for (let k = 3 * p; k < 3 * p + 3; k++) {
      const diff = x[k] - omega[k];
      sum += c * diff * diff;
      if (g) g[k] += (2 * weight * c * diff) / d;
    }
  }
  return sum / d;
}

/**
 * J_tv of an image (HWC) with float64 sums, and, when `g` is given, adds
 * weight * d J_tv / d x: a pixel-space term, exact on the whole image at once.
 */
export function smoothness(x: Float32Array, height: number, width: number, g: Float32Array | undefined, weight: number): number {
  const row = width * 3;
  let sum = 0;
  for (let i = 0; i < height; i++)
    for (let j = 0; j < row; j++) {
      const at = i * row + j;
      const v = x[at];
      const down = i + 1 < height ? x[at + row] - v : 0;
      const right = j + 3 < row ? x[at + 3] - v : 0;
      sum += down * down + right * right;
      if (g && weight !== 0) {
        const up = i > 0 ? v - x[at - row] : 0;
        const left = j >= 3 ? v - x[at - 3] : 0;
        g[at] += 2 * weight * (up - down + left - right);
      }
    }
  return sum;
}
