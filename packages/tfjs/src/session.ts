/**
 * One optimisation job on TensorFlow.js: N images of one size, each with its
 * own targets, kept on the backend as tf.Variables together with the Adam
 * moments. Every step (forward, loss, gradient, Adam) is tf ops; JavaScript
 * only sees the losses, once per iterate() call.
 */
import type { Tensor2D, Tensor3D, Tensor4D, Variable } from '@tensorflow/tfjs';
import { effectiveMask, layerInputSize, maskAtLayers, maskMass, styleRegions, UserError } from '@nst/core';
import type { AdamConfig, ImageTensor, IterateOptions, LossValues, Session, SessionOptions, Targets } from '@nst/core';
import type { Tf } from './load.js';
import type { TfVgg } from './network.js';
import { gram, guidedGram, layerIndex, lossLayers, lossParts } from './objective.js';
import type { TfRegion, TfTargets } from './objective.js';

/** Lets timers and signal handlers (Ctrl-C) run between steps. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class TfjsSession implements Session {
  private readonly shape: [number, number, number, number];
  private readonly wanted: Set<number>;
  private readonly image: Variable;
  private readonly m: Variable;
  private readonly v: Variable;
  private targets: TfTargets | undefined;
  private disposed = false;

  constructor(
    private readonly tf: Tf,
    private readonly vgg: TfVgg,
    readonly options: SessionOptions,
    private readonly onDispose: () => void,
  ) {
    const { batch, height, width } = options;
    this.shape = [batch, height, width, 3];
    this.wanted = lossLayers(options.loss);
    // tidy frees the zeros the variables are made from (variables are never tidied).
    this.image = tf.tidy(() => tf.variable(tf.zeros(this.shape), true));
    this.m = tf.tidy(() => tf.variable(tf.zeros(this.shape), false));
    this.v = tf.tidy(() => tf.variable(tf.zeros(this.shape), false));
  }

  async setTargets(targets: readonly Targets[]): Promise<void> {
    const { batch, height, width, pooling, loss } = this.options;
    if (targets.length !== batch) throw new Error(`setTargets: ${targets.length} targets for a batch of ${batch}`);
    for (const t of targets) {
      if (t.content.height !== height || t.content.width !== width || t.content.data.length !== height * width * 3)
        throw new Error(`setTargets: content image is ${t.content.width}x${t.content.height}, the session is ${width}x${height}`);
      if (loss.styleLayers.length > 0 && t.styles.length === 0) throw new Error('setTargets: no style image');
      for (const s of t.styles)
        if (s.image.data.length !== s.image.height * s.image.width * 3)
          throw new Error(`setTargets: style image data has ${s.image.data.length} values for ${s.image.width}x${s.image.height}x3`);
    }
    const tf = this.tf;
    const contentIndices = [...new Set(loss.contentLayers.map((l) => layerIndex(l.layer)))];
    const styleIndices = [...new Set(loss.styleLayers.map((l) => layerIndex(l.layer)))];
    const masked = targets.some((t) => t.styles.some((s) => effectiveMask(s.mask)));
    const { content, style } = tf.tidy(() => {
      let content: Tensor4D[] = [];
      if (contentIndices.length > 0) {
        const images = tf.stack(targets.map((t) => tf.tensor3d(t.content.data, [height, width, 3]))) as Tensor4D;
        const acts = this.vgg.forward(images, pooling, new Set(contentIndices));
        content = contentIndices.map((i) => acts.get(i)!);
      }
      // Per item: the weighted sum of its style images' Grams, then stacked over the batch (with style masks the
      // regions hold the targets instead).
      const perItem = masked ? [] : targets.map((t) => this.blendedGrams(t.styles, styleIndices));
      const style =
        perItem.length === 0
          ? []
          : styleIndices.map(
              (_, k) =>
                tf.concat(
                  perItem.map((grams) => grams[k]),
                  0,
                ) as Tensor3D,
            );
      return { content, style };
    });
    this.disposeTargets();
    this.targets = {
      content: new Map(contentIndices.map((i, k) => [i, content[k]])),
      style: new Map(style.map((g, k) => [styleIndices[k], g])),
      regions: masked ? this.regions(targets, styleIndices) : undefined,
      contentMasks: targets.some((t) => effectiveMask(t.contentMask)) ? this.contentMasks(targets, contentIndices) : undefined,
      temporal: loss.temporalWeight ? this.temporalTargets(targets) : undefined,
    };
  }

  async setImages(images: Float32Array): Promise<void> {
    this.checkLength('setImages', images);
    const tf = this.tf;
    tf.tidy(() => {
      this.image.assign(tf.tensor4d(images, this.shape));
      this.m.assign(tf.zerosLike(this.m));
      this.v.assign(tf.zerosLike(this.v));
    });
  }

  async iterate(options: IterateOptions): Promise<LossValues[]> {
    const steps = options.stepSizes.length;
    let first: Tensor2D | undefined;
    if (steps === 0) first = this.tf.tidy(() => this.parts(this.image as Tensor4D));
    for (let s = 0; s < steps; s++) {
      const parts = this.update(options.stepSizes[s], options.adam);
      if (s === 0) first = parts;
      else parts.dispose();
      options.onProgress?.(s + 1);
      await yieldToEventLoop();
    }
    return this.readLosses(first!);
  }

  async lossAndGradient(): Promise<{ losses: LossValues[]; gradient: Float32Array }> {
    const { parts, grad } = this.lossAndGrad();
    const gradient = new Float32Array(await grad.data());
    grad.dispose();
    return { losses: await this.readLosses(parts), gradient };
  }

  async readImages(): Promise<Float32Array> {
    return new Float32Array(await this.image.data());
  }

  async readOptimizerState(): Promise<{ m: Float32Array; v: Float32Array }> {
    return { m: new Float32Array(await this.m.data()), v: new Float32Array(await this.v.data()) };
  }

  async writeOptimizerState(state: { m: Float32Array; v: Float32Array }): Promise<void> {
    this.checkLength('writeOptimizerState m', state.m);
    this.checkLength('writeOptimizerState v', state.v);
    this.tf.tidy(() => {
      this.m.assign(this.tf.tensor4d(state.m, this.shape));
      this.v.assign(this.tf.tensor4d(state.v, this.shape));
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposeTargets();
    this.image.dispose();
    this.m.dispose();
    this.v.dispose();
    this.onDispose();
  }

  // ------------------------------------------------------------ internals

  /** [5, N] loss parts of `x` (rows content, style, tv, temporal, total). */
  private parts(x: Tensor4D): Tensor2D {
    if (!this.targets) throw new Error('setTargets must be called before the loss is evaluated');
    const acts = this.vgg.forward(x, this.options.pooling, this.wanted);
    return lossParts(this.tf, this.options.loss, x, acts, this.targets);
  }

  /** Loss parts and d(sum of totals)/d image from one forward pass; the caller disposes both. */
  private lossAndGrad(): { parts: Tensor2D; grad: Tensor4D } {
    const tf = this.tf;
    const n = this.shape[0];
    let parts: Tensor2D | undefined;
    const grad = tf.grad((x) => {
      const p = this.parts(x as Tensor4D);
      parts = tf.keep(p); // outlives the gradient's tidy scope
      // Items are independent, so the gradient of the sum is each item's own gradient.
      return tf.sum(tf.slice(p, [4, 0], [1, n]));
    })(this.image as Tensor4D) as Tensor4D;
    return { parts: parts!, grad };
  }

  /** One TF1 Adam step (core/adam.ts) with step size lrT; returns the loss parts before it. */
  private update(lrT: number, cfg: AdamConfig): Tensor2D {
    const tf = this.tf;
    const { parts, grad } = this.lossAndGrad();
    tf.tidy(() => {
      const m = tf.add(tf.mul(this.m, cfg.beta1), tf.mul(grad, 1 - cfg.beta1));
      const v = tf.add(tf.mul(this.v, cfg.beta2), tf.mul(tf.square(grad), 1 - cfg.beta2));
      const step = tf.div(tf.mul(m, lrT), tf.add(tf.sqrt(v), cfg.eps));
      this.image.assign(tf.sub(this.image, step));
      this.m.assign(m);
      this.v.assign(v);
    });
    grad.dispose();
    return parts;
  }

  private async readLosses(parts: Tensor2D): Promise<LossValues[]> {
    const [content, style, tv, temporal, total] = (await parts.array()) as number[][];
    parts.dispose();
    const withTemporal = Boolean(this.options.loss.temporalWeight);
    return content.map((_, b) => ({
      content: content[b],
      style: style[b],
      tv: tv[b],
      ...(withTemporal ? { temporal: temporal[b] } : {}),
      total: total[b],
    }));
  }

  /**
   * sum_s weight_s Ghat_s per style layer, [1, C, C] each: Ghat_s the style
   * image's Gram, guided by its region mask where it has one. Call inside tf.tidy.
   */
  private blendedGrams(
    styles: ReadonlyArray<{ image: ImageTensor; weight: number; region?: Float32Array }>,
    styleIndices: number[],
  ): Tensor3D[] {
    const tf = this.tf;
    const blended = styleIndices.map(() => undefined as Tensor3D | undefined);
    for (const { image, weight, region } of styles) {
      const x = tf.tensor4d(image.data, [1, image.height, image.width, 3]);
      const acts = this.vgg.forward(x, this.options.pooling, new Set(styleIndices));
      const masks = effectiveMask(region) ? this.pooledMasks(region!, image.height, image.width, styleIndices) : undefined;
      styleIndices.forEach((i, k) => {
        const a = acts.get(i)!;
        const m = masks?.get(i);
        if (m && !(m.mass > 0))
          throw new UserError(`a style's region selects nothing of its painting (black at conv layer ${i})`, {
            code: 'unsupported',
            field: 'styleRegion',
          });
        const c = a.shape[3];
        const g = tf.mul(m ? tf.reshape(guidedGram(tf, a, m.mask, m.mass), [1, c, c]) : gram(tf, a), weight) as Tensor3D;
        blended[k] = blended[k] ? (tf.add(blended[k]!, g) as Tensor3D) : g;
      });
    }
    return blended as Tensor3D[];
  }

  /** A mask pooled to each of `layers` as [1, h, w, 1] tensors with its mass (core's maskAtLayers). */
  private pooledMasks(mask: Float32Array, height: number, width: number, layers: number[]): Map<number, { mask: Tensor4D; mass: number }> {
    if (mask.length !== height * width) throw new Error(`setTargets: a mask of ${mask.length} values for ${width}x${height}`);
    const out = new Map<number, { mask: Tensor4D; mass: number }>();
    for (const [i, m] of maskAtLayers(mask, height, width, layers)) {
      const size = layerInputSize(i, height, width);
      out.set(i, { mask: this.tf.tensor4d(m, [1, size.height, size.width, 1]), mass: maskMass(m) });
    }
    return out;
  }

  /** Style masks: each item's regions (core's styleRegions) with their masks and blended targets at the style layers. */
  private regions(targets: readonly Targets[], styleIndices: number[]): TfRegion[][] {
    const { height, width } = this.options;
    return targets.map((t) =>
      styleRegions(t.styles).map((r) => {
        const grams = this.tf.tidy(() => this.blendedGrams(r.styles, styleIndices).map((g) => this.tf.squeeze(g, [0]) as Tensor2D));
        return {
          masks: r.mask ? this.pooledMasks(r.mask, height, width, styleIndices) : undefined,
          targets: new Map(styleIndices.map((i, k) => [i, grams[k]])),
        };
      }),
    );
  }

  /** The content mask pooled to each content layer, batched [N, h, w, 1] (1 for an item without one). */
  private contentMasks(targets: readonly Targets[], contentIndices: number[]): Map<number, Tensor4D> {
    const { height, width } = this.options;
    const white = new Float32Array(height * width).fill(1);
    const perItem = targets.map((t) => maskAtLayers(t.contentMask ?? white, height, width, contentIndices));
    return new Map(
      contentIndices.map((i) => {
        const size = layerInputSize(i, height, width);
        const data = new Float32Array(targets.length * size.height * size.width);
        perItem.forEach((m, b) => data.set(m.get(i)!, b * size.height * size.width));
        return [i, this.tf.tensor4d(data, [targets.length, size.height, size.width, 1])];
      }),
    );
  }

  /** Video: each item's warped previous frame and pixel weights, batched (weight 0 for an item without one). */
  private temporalTargets(targets: readonly Targets[]): NonNullable<TfTargets['temporal']> {
    const { height, width } = this.options;
    const pixels = height * width;
    const images = new Float32Array(targets.length * pixels * 3);
    const weights = new Float32Array(targets.length * pixels);
    targets.forEach((t, b) => {
      if (!t.temporal) return;
      if (t.temporal.image.height !== height || t.temporal.image.width !== width || t.temporal.weights.length !== pixels)
        throw new Error(`setTargets: the temporal target must be ${width}x${height}, with one weight per pixel`);
      images.set(t.temporal.image.data, b * pixels * 3);
      weights.set(t.temporal.weights, b * pixels);
    });
    const n = targets.length;
    return { image: this.tf.tensor4d(images, [n, height, width, 3]), weights: this.tf.tensor4d(weights, [n, height, width, 1]) };
  }

  private checkLength(what: string, data: Float32Array): void {
    const expected = this.shape.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new Error(`${what}: ${data.length} values, expected ${this.shape.join('x')} = ${expected}`);
  }

  private disposeTargets(): void {
    if (!this.targets) return;
    for (const t of this.targets.content.values()) t.dispose();
    for (const t of this.targets.style.values()) t.dispose();
    for (const item of this.targets.regions ?? [])
      for (const r of item) {
        for (const m of r.masks?.values() ?? []) m.mask.dispose();
        for (const g of r.targets.values()) g.dispose();
      }
    for (const m of this.targets.contentMasks?.values() ?? []) m.dispose();
    this.targets.temporal?.image.dispose();
    this.targets.temporal?.weights.dispose();
    this.targets = undefined;
  }
}
