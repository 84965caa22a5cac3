import os from 'node:os';
import {
  deepestLayerIndex,
  findLayer,
  formatBytes,
  forwardFlops,
  largestFittingSize,
  MAX_SIDE,
  layerInputSize,
  lbfgsMemoryBytes,
  memoryRefusal,
  tileHalo,
  tileShapes,
  UserError,
  VGG19_LAYERS,
  weightFloats,
  coreCandidates,
  layerStride,
  DEFAULT_ADAM,
  Rng,
  type Backend,
  type LossSpec,
  type MemoryShape,
  type Pooling,
  type Tile,
} from '@nst/core';
import { hostMemoryAvailable } from './memory.js';
import { imageTiles, tiledLayout } from './tiled-session.js';

/*
 * The memory plan made before every run (issue 20): where the render's
 * memory goes, whether it fits the budget untiled, and if not, the tiling
 * that does (packages/job/src/tiled-session.ts). Every front end plans
 * through planRun; `nst plan` (`nst render --dry-run`) prints it.
 *
 * The budget is for the process's peak resident memory (a device backend:
 * for the device's memory, the host's being checked against what it has
 * free). The peak is counted as
 *   the process as it is now (node, the libraries, the weights loaded)
 *   + the engine's own plan of its buffers (Backend.estimateMemory, or
 *     estimateTileMemory for a tile session and its nets), less the weights
 *     it already holds
 *   + what the host holds besides: untiled, the loop's copies of the images;
 *     tiled, the images, their gradient and Adam's moments, the loop's copy,
 *     the content targets (or the content image they are recomputed from)
 *     and the tiles' scratch; with L-BFGS, its history.
 */

/** `--tile`: auto (untiled when it fits, else the largest tile that fits), off, or a core size in pixels. */
export type TileSetting = 'auto' | 'off' | number;

/** How a machine renders: its memory budget and the tiling asked for. */
export interface MachineSettings {
  /** Bytes the render may use at its peak (the process's; a device backend: the device's); default: what is free less a margin. */
  readonly memoryBytes?: number;
  readonly tile?: TileSetting;
}

/** What to plan: one scale of an engine batch. */
export interface PlanRequest {
  readonly shape: MemoryShape;
  readonly optimizer: 'adam' | 'lbfgs';
  /** L-BFGS's pairs asked for. */
  readonly lbfgsHistory: number;
  /** The backend already holds the weights (they are in the process's memory, or the device's, now). */
  readonly weightsLoaded: boolean;
}

export interface TiledPlan {
  /** The core of a tile, in pixels (a multiple of the deepest loss layer's stride). */
  readonly core: number;
  readonly tiles: number;
  readonly rows: number;
  readonly columns: number;
  /** The halo of the deepest loss layer (80 up to conv5_1). */
  readonly halo: number;
  /** The largest extended region (the output's tiles and the style images'). */
  readonly tileHeight: number;
  readonly tileWidth: number;
  readonly contentTargets: 'keep' | 'recompute';
  /** Bytes the tile session may keep nets in. */
  readonly netBudget: number;
  /** Tiles whose pass-1 activations pass 2 finds still held, per evaluation (about). */
  readonly tilesKept: number;
}

export interface RunPlan {
  readonly backend: string;
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  /** Bytes the run may use at its peak, and where that figure comes from. */
  readonly budget: number;
  readonly budgetFrom: 'given' | 'free memory';
  /** The budget is for a device's memory (cuda), not the process's. */
  readonly device: boolean;
  /** The predicted peak of an untiled run, where the budget applies (Infinity: the engine cannot take it at any memory). */
  readonly untiledPeak: number;
  /** The largest size at this aspect that renders untiled within the budget. */
  readonly largestUntiled?: { readonly width: number; readonly height: number };
  readonly tiled?: TiledPlan;
  /** The predicted peak of the run as planned, where the budget applies. */
  readonly peak: number;
  /** The predicted peak of the process (with a device backend: the host's side). */
  readonly hostPeak: number;
  /** What the peak is made of, bytes by part. */
  readonly parts: Readonly<Record<string, number>>;
  /** L-BFGS pairs kept: the request's, or fewer when the budget is short (then `lbfgsCut`). */
  readonly lbfgsHistory?: number;
  readonly lbfgsCut?: boolean;
  /** Floating-point work of one iteration: every forward and backward, recomputations included. */
  readonly flopsPerIteration: number;
}

/** Bytes left free for the rest of the machine when the budget is not given: 5% of it, at least 256 MiB. */
export function memoryMargin(total: number): number {
  return Math.max(256 * 2 ** 20, 0.05 * total);
}

/** The process's resident bytes now. */
function residentBytes(): number {
  return process.memoryUsage().rss;
}

/** Floats of each content layer's map, summed: the content targets of one image. */
function contentTargetFloats(shape: Pick<MemoryShape, 'height' | 'width' | 'loss'>): number {
  let n = 0;
  for (const l of shape.loss.contentLayers) {
    const i = findLayer(l.layer)!.index;
    const s = layerInputSize(i, shape.height, shape.width);
    n += s.height * s.width * VGG19_LAYERS[i].outChannels;
  }
  return n;
}

/**
 * Plans a run of `request` on `backend` under `settings`: untiled when it
 * fits (or --tile off), else tiled with the fastest layout that fits (or
 * the core --tile names). Refuses, with the estimate, the budget and the
 * largest size that fits, what fits in no way.
 */
export function planRun(backend: Backend, request: PlanRequest, settings: MachineSettings = {}): RunPlan {
  const { shape } = request;
  const device = backend.deviceMemoryAvailable !== undefined;
  const baseline = residentBytes();
  const hostFree = hostMemoryAvailable();
  const hostBudget =
    device || settings.memoryBytes === undefined ? baseline + hostFree - memoryMargin(os.totalmem()) : settings.memoryBytes;
  const deviceFree = backend.deviceMemoryAvailable?.() ?? 0;
  const budget = device ? (settings.memoryBytes ?? deviceFree - memoryMargin(deviceFree)) : hostBudget;
  const budgetFrom = settings.memoryBytes === undefined ? 'free memory' : 'given';
  const deepest = deepestLayerIndex(shape.loss);
  const heldWeights = request.weightsLoaded ? 4 * weightFloats(deepest) : 0;
  const image = shape.height * shape.width * 3 * 4;
  const images = shape.batch * image;
  const n = shape.batch * shape.height * shape.width * 3;
  const styles = shape.batch * shape.styleSizes.reduce((a, s) => a + s.height * s.width * 3 * 4, 0);
  const tile = settings.tile ?? 'auto';
  const lbfgs = request.optimizer === 'lbfgs';
  const history = (pairs: number) => (lbfgs ? lbfgsMemoryBytes(pairs, n) : 0);
  const where = (engine: number, host: number) => (device ? engine : baseline + engine + host);

  // Untiled: the engine's plan, and the host's copies of the images (the start's inputs, or the loop's).
  const untiledHost = (s: MemoryShape) => {
    const p = s.batch * s.height * s.width * 12;
    return 2 * p + s.batch * s.styleSizes.reduce((a, z) => a + z.height * z.width * 12, 0);
  };
  const untiledEngine = (s: MemoryShape) => backend.estimateMemory(s) - heldWeights;
  const untiledHostPeak = baseline + untiledHost(shape) + history(request.lbfgsHistory) + (device ? 0 : untiledEngine(shape));
  const untiledPeak = where(untiledEngine(shape), untiledHost(shape) + history(request.lbfgsHistory));
  const largestUntiled = largestSize(
    shape,
    (s) => where(untiledEngine(s), untiledHost(s) + (lbfgs ? lbfgsMemoryBytes(request.lbfgsHistory, s.batch * s.height * s.width * 3) : 0)),
    budget,
  );
  const base = {
    backend: backend.name,
    width: shape.width,
    height: shape.height,
    batch: shape.batch,
    budget,
    budgetFrom,
    device,
    untiledPeak,
    largestUntiled,
  } as const;
  const untiledFlops = 2 * shape.batch * forwardFlops(deepest, shape.height, shape.width);

  const hostFits = (hostPeak: number) => !device || hostPeak <= hostBudget;
  if (typeof tile === 'number' && !backend.createTileSession)
    throw new UserError(`--tile ${tile}: the ${backend.name} backend cannot render tile by tile (the cpu and cuda backends can)`, {
      code: 'unsupported',
      field: 'tile',
    });
  if (tile === 'off' || (tile === 'auto' && untiledPeak <= budget && hostFits(untiledHostPeak)) || !backend.createTileSession) {
    if (untiledPeak > budget || !hostFits(untiledHostPeak)) {
      // In the process's memory: what the render adds to the process as it is now, against what the budget
      // leaves it (the estimate then reads the same in every process that makes it).
      const here = untiledPeak > budget && device ? 0 : baseline;
      const refusal = memoryRefusal(
        backend.name,
        shape,
        (untiledPeak > budget ? untiledPeak : untiledHostPeak) - here,
        (untiledPeak > budget ? budget : hostBudget) - here,
        (s) => where(untiledEngine(s), untiledHost(s)) - (device ? 0 : baseline),
      );
      // The one refusal line (core's memoryRefusal), as without tiling: --tile off asked for it, or the backend cannot tile.
      throw new UserError(refusal.detail, { code: 'too-large', field: 'size' });
    }
    return {
      ...base,
      peak: untiledPeak,
      hostPeak: untiledHostPeak,
      parts: {
        process: baseline,
        engine: untiledEngine(shape),
        'images (host)': untiledHost(shape),
        ...(lbfgs ? { 'L-BFGS history': history(request.lbfgsHistory) } : {}),
      },
      ...(lbfgs ? { lbfgsHistory: request.lbfgsHistory, lbfgsCut: false } : {}),
      flopsPerIteration: untiledFlops,
    };
  }

  // Tiled: try cores from the largest down (or the one asked for).
  const estimateTiles = backend.estimateTileMemory!.bind(backend);
  const halo = tileHalo(deepest);
  const stride = layerStride(deepest);
  if (typeof tile === 'number' && (tile % stride !== 0 || tile < stride))
    throw new UserError(`--tile ${tile}: a tile's core must be a multiple of ${stride} pixels (the stride of the deepest loss layer)`, {
      code: 'invalid',
      field: 'tile',
    });
  const cores = typeof tile === 'number' ? [tile] : coreCandidates(shape.height, shape.width, deepest, Math.max(stride, 2 * halo));
  const content = shape.batch * contentTargetFloats(shape) * 4;
  let best: { plan: RunPlan; flops: number } | undefined;
  let smallestNeed = Infinity;
  for (const core of cores) {
    const layout = tiledLayout({ ...shape, core }, shape.styleSizes);
    const outputTiles = layout.tiles;
    // A style image of the output's size has the output's tiles, whose nets the tile pool reuses (a
    // net is keyed by its tile's shape and its image's size: native/src/tile_pool.h); others have their own.
    const ownStyleTiles = shape.styleSizes
      .filter((s) => s.height !== shape.height || s.width !== shape.width)
      .flatMap((s) => imageTiles(s.height, s.width, core, deepest));
    const shapes = tileShapes([...outputTiles, ...ownStyleTiles]);
    const sessionOptions = {
      tileHeight: layout.tileHeight,
      tileWidth: layout.tileWidth,
      pooling: shape.pooling,
      loss: shape.loss,
      netBudget: 0,
    };
    const memory = estimateTiles(sessionOptions, shapes);
    if (!Number.isFinite(memory.fixed)) continue;
    const netOf = (t: Tile) =>
      memory.nets[shapes.findIndex((s) => s.height === t.extended.y1 - t.extended.y0 && s.width === t.extended.x1 - t.extended.x0)];
    const largestNet = Math.max(...memory.nets);
    // What the pool may hold at once: a net per output tile (each keeps its tile's activations for
    // pass 2), and the largest net of the style images' own tiles.
    const allNets = outputTiles.reduce((a, t) => a + netOf(t), 0) + ownStyleTiles.reduce((a, t) => Math.max(a, netOf(t)), 0);
    const scratch = 3 * layout.tileHeight * layout.tileWidth * 12;
    for (const mode of ['keep', 'recompute'] as const) {
      const held = mode === 'keep' ? content : images;
      // x, the gradient and the loop's two copies (the last good image, and at the end the final
      // one beside it: packages/job/src/loop.ts); Adam's moments, or L-BFGS's history.
      const loopImages = (lbfgs ? 4 : 6) * images;
      const startImages = 2 * images + styles;
      const hostOf = (pairs: number) => Math.max(loopImages, startImages) + held + scratch + history(pairs);
      const engineFixed = memory.fixed - heldWeights;
      const leftFor = (pairs: number) => budget - (device ? engineFixed : baseline + engineFixed + hostOf(pairs));
      const need = (device ? engineFixed : baseline + engineFixed + hostOf(lbfgs ? 1 : 0)) + largestNet;
      smallestNeed = Math.min(smallestNeed, need);
      if (leftFor(lbfgs ? 1 : 0) < largestNet || !hostFits(baseline + hostOf(lbfgs ? 1 : 0))) continue;
      // L-BFGS's history first (what it asks for, else what the budget leaves), then nets.
      let pairs = request.lbfgsHistory;
      if (lbfgs) {
        const roomy = (p: number) => leftFor(p) >= largestNet && hostFits(baseline + hostOf(p));
        if (!roomy(pairs)) {
          let lo = 1;
          let hi = pairs;
          while (hi - lo > 1) {
            const mid = Math.floor((lo + hi) / 2);
            if (roomy(mid)) lo = mid;
            else hi = mid;
          }
          pairs = lo;
        }
      }
      const netBudget = Math.max(largestNet, Math.min(leftFor(pairs), allNets));
      const interior = netOf(outputTiles[0]);
      const kept = Math.min(outputTiles.length, Math.max(1, Math.floor(netBudget / interior)));
      const flops = tiledFlops(outputTiles, deepest, mode, kept) * shape.batch;
      const hostPeak = baseline + hostOf(pairs) + (device ? 0 : engineFixed + netBudget);
      const peak = device ? engineFixed + netBudget : hostPeak;
      const plan: RunPlan = {
        ...base,
        tiled: {
          core,
          tiles: outputTiles.length,
          rows: Math.ceil(shape.height / core),
          columns: Math.ceil(shape.width / core),
          halo,
          tileHeight: layout.tileHeight,
          tileWidth: layout.tileWidth,
          contentTargets: mode,
          netBudget,
          tilesKept: kept,
        },
        peak,
        hostPeak,
        parts: {
          process: baseline,
          'engine (weights, reserves)': engineFixed,
          'engine (tile nets)': netBudget,
          'images and optimiser state (host)': Math.max(loopImages, startImages) + scratch,
          [mode === 'keep' ? 'content targets (host)' : 'content image (host, targets recomputed per tile)']: held,
          ...(lbfgs ? { 'L-BFGS history': history(pairs) } : {}),
        },
        ...(lbfgs ? { lbfgsHistory: pairs, lbfgsCut: pairs < request.lbfgsHistory } : {}),
        flopsPerIteration: flops,
      };
      if (!best || flops < best.flops) best = { plan, flops };
    }
    // Smaller cores only add halo: stop at the first that keeps the content targets.
    if (best?.plan.tiled?.contentTargets === 'keep') break;
  }
  if (!best) {
    const why =
      typeof tile === 'number'
        ? `--tile ${tile}: ${shape.width}x${shape.height} tiled so needs about ${formatBytes(smallestNeed)}`
        : `${shape.width}x${shape.height} needs about ${formatBytes(smallestNeed)} even tile by tile`;
    throw new UserError(
      `${why} on the ${backend.name} backend but the budget is ${formatBytes(budget)}${
        lbfgs ? ' (L-BFGS holds the image 11 times over besides its history: --optimizer adam needs less)' : ''
      }: give more (--memory) or render smaller`,
      { code: 'too-large', field: typeof tile === 'number' ? 'tile' : 'size' },
    );
  }
  return best.plan;
}

/**
 * The largest size at the shape's aspect whose estimate fits `budget`,
 * larger than the shape's own when that fits (up to MAX_SIDE a side).
 */
function largestSize(
  shape: MemoryShape,
  estimate: (s: MemoryShape) => number,
  budget: number,
): { height: number; width: number } | undefined {
  const scaled = (f: number): MemoryShape => ({
    ...shape,
    height: Math.max(1, Math.floor(shape.height * f)),
    width: Math.max(1, Math.floor(shape.width * f)),
    styleSizes: shape.styleSizes.map((z) => ({
      height: Math.max(1, Math.floor(z.height * f)),
      width: Math.max(1, Math.floor(z.width * f)),
    })),
  });
  let f = 1;
  const side = Math.max(shape.height, shape.width);
  while (side * f * 2 <= MAX_SIDE && estimate(scaled(f * 2)) <= budget) f *= 2;
  if (f > 1 && side * f * 2 > MAX_SIDE) f = MAX_SIDE / side;
  else if (f > 1 || estimate(shape) <= budget) f *= 2;
  return largestFittingSize(scaled(f), estimate, budget);
}

/**
 * Work of one tiled evaluation with its update: every tile forwarded in
 * pass 1 and backpropagated in pass 2 (a backward costs about a forward),
 * forwarded again unless it was kept, and the content tile forwarded too when
 * its targets are recomputed.
 */
function tiledFlops(tiles: readonly Tile[], deepest: number, mode: 'keep' | 'recompute', kept: number): number {
  let flops = 0;
  tiles.forEach((t, i) => {
    const f = forwardFlops(deepest, t.extended.y1 - t.extended.y0, t.extended.x1 - t.extended.x0);
    const again = i >= tiles.length - kept ? 0 : 1;
    const passes = mode === 'keep' ? 2 + again : 3 + 2 * again;
    flops += passes * f;
  });
  return flops;
}

/** The plan in a few lines, for `nst plan` and `nst render --dry-run`. */
export function describePlan(plan: RunPlan, secondsPerFlop?: number): string[] {
  const gib = (b: number) => formatBytes(b);
  const size = `${plan.width}x${plan.height}${plan.batch > 1 ? ` batch ${plan.batch}` : ''}`;
  const lines = [
    `${size} on ${plan.backend}: budget ${gib(plan.budget)} (${plan.budgetFrom === 'given' ? '--memory' : 'free memory less a margin'})${plan.device ? ' of device memory' : ''}`,
  ];
  const untiled = Number.isFinite(plan.untiledPeak) ? `about ${gib(plan.untiledPeak)}` : 'beyond what the engine can describe';
  const largest = plan.largestUntiled
    ? `; the largest untiled size is about ${plan.largestUntiled.width}x${plan.largestUntiled.height}`
    : '; not even the smallest size fits untiled';
  lines.push(`untiled: ${untiled}${plan.untiledPeak <= plan.budget ? ', fits' : ', does not fit'}${largest}`);
  const t = plan.tiled;
  if (t)
    lines.push(
      `tiled: ${t.tiles} tiles (${t.rows} x ${t.columns}) of ${t.core} px with a halo of ${t.halo} (tiles up to ${t.tileWidth}x${t.tileHeight}); ` +
        `content targets ${t.contentTargets === 'keep' ? 'kept on the host' : 'recomputed per tile from the content image'}; ` +
        `about ${t.tilesKept} of ${t.tiles} tiles keep their activations for pass 2`,
    );
  else lines.push('renders untiled');
  lines.push(
    `peak memory: about ${gib(plan.peak)}${plan.device ? ` of device memory (the process: about ${gib(plan.hostPeak)})` : ''}: ` +
      Object.entries(plan.parts)
        .map(([k, v]) => `${k} ${gib(v)}`)
        .join(', '),
  );
  if (plan.lbfgsHistory !== undefined && plan.lbfgsCut)
    lines.push(`L-BFGS keeps ${plan.lbfgsHistory} curvature pairs: the budget holds no more`);
  if (secondsPerFlop !== undefined)
    lines.push(
      `time: about ${(plan.flopsPerIteration * secondsPerFlop).toFixed(plan.flopsPerIteration * secondsPerFlop < 10 ? 2 : 0)} s per iteration`,
    );
  return lines;
}

/**
 * Seconds per floating-point operation of `backend` here and now: a short
 * untiled run at a small size (a session, its targets, one update to warm
 * up, then three timed), for the plan's time per iteration. It errs slow:
 * small maps run below the convolutions' best speed.
 */
export async function measureSecondsPerFlop(backend: Backend, options: { pooling: Pooling; loss: LossSpec }, side = 192): Promise<number> {
  const rng = new Rng(1);
  const image = () => ({ height: side, width: side, data: rng.fillUniform(new Float32Array(side * side * 3), -50, 50) });
  const session = await backend.createSession({ height: side, width: side, batch: 1, ...options });
  try {
    await session.setTargets([{ content: image(), styles: [{ image: image(), weight: 1 }] }]);
    await session.setImages(image().data);
    const steps = (n: number) => ({ adam: DEFAULT_ADAM, stepSizes: new Float32Array(n).fill(0.5) });
    await session.iterate(steps(1));
    const t0 = performance.now();
    await session.iterate(steps(3));
    const seconds = (performance.now() - t0) / 1000;
    return seconds / (3 * 2 * forwardFlops(deepestLayerIndex(options.loss), side, side));
  } finally {
    session.dispose();
  }
}
