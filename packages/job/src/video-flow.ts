/**
 * The geometry of temporal consistency (Ruder, Dosovitskiy and Brox,
 * "Artistic style transfer for videos", 2016), on dense flow fields:
 * warping, the forward-backward consistency check that finds occlusions,
 * motion boundaries, and the per-pixel weights of the temporal loss.
 *
 * A flow field is height x width x 2 float32 values, (dx, dy) per pixel.
 * The forward flow w of frames (t-1, t) sends a pixel p of frame t-1 to
 * p + w(p) in frame t; the backward flow w^ sends a pixel p of frame t to
 * p + w^(p) in frame t-1. Pixel centres are at integer coordinates.
 */
import { resizeBilinear, type RgbImage } from '@nst/core';
import type { Size } from './schedule.js';

/** A dense flow field: height x width x 2 (dx, dy per pixel). */
export interface FlowField {
  readonly width: number;
  readonly height: number;
  readonly data: Float32Array;
}

/**
 * Computes the flow from one grey frame to another (height x width bytes
 * each) as a FlowField's data: OpenCV's DIS in the native addon, with the
 * job's preset; injected, so that this package needs no addon.
 */
export type FlowFunction = (from: Uint8Array, to: Uint8Array, size: Size, preset: 'fast' | 'medium') => Float32Array;

/** 8-bit luma (Rec. 601: 0.299 R + 0.587 G + 0.114 B), the grey the flow is computed on. */
export function greyOf(image: RgbImage): Uint8Array {
  const n = image.width * image.height;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++)
    out[i] = Math.round(0.299 * image.data[3 * i] + 0.587 * image.data[3 * i + 1] + 0.114 * image.data[3 * i + 2]);
  return out;
}

/**
 * Bilinear sampling of `image` (height x width x channels) at p + flow(p) for
 * every pixel p: out(p) = image(p + flow(p)). A position outside the image
 * (beyond its outer pixel centres) samples nothing: `inside` is 0 there (and
 * out holds 0). An integer flow copies pixels exactly.
 */
export function warp(
  image: Float32Array,
  channels: number,
  flow: FlowField,
): { readonly image: Float32Array; readonly inside: Uint8Array } {
  const { width: w, height: h, data: f } = flow;
  if (image.length !== w * h * channels) throw new RangeError('warp: the image and the flow differ in size');
  const out = new Float32Array(image.length);
  const inside = new Uint8Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const sx = x + f[2 * p];
      const sy = y + f[2 * p + 1];
      if (!(sx >= 0 && sx <= w - 1 && sy >= 0 && sy <= h - 1)) continue;
      inside[p] = 1;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      // Where a weight is 0, its neighbour (which may not exist) is not read.
      const x1 = fx > 0 ? x0 + 1 : x0;
      const y1 = fy > 0 ? y0 + 1 : y0;
      for (let c = 0; c < channels; c++) {
        const at = (yy: number, xx: number) => image[(yy * w + xx) * channels + c];
        const top = fx > 0 ? at(y0, x0) * (1 - fx) + at(y0, x1) * fx : at(y0, x0);
        const bottom = fx > 0 ? at(y1, x0) * (1 - fx) + at(y1, x1) * fx : at(y1, x0);
        out[p * channels + c] = fy > 0 ? top * (1 - fy) + bottom * fy : top;
      }
    }
  return { image: out, inside };
}

/** Why a pixel of frame t has no temporal term. */
export interface ConsistencyMasks {
  /** 1 where p + w^(p) falls outside frame t-1. */
  readonly outside: Uint8Array;
  /** 1 where the forward and backward flows do not cancel (the pixel was hidden in frame t-1). */
  readonly occluded: Uint8Array;
  /** 1 on motion boundaries (the backward flow changes fast). */
  readonly motionBoundary: Uint8Array;
  /** The temporal loss's weight c(p): 0 where any of the above holds, else 1. */
  readonly weights: Float32Array;
}

/**
 * The forward-backward consistency check of Ruder et al. (section 3.2) for
 * frame t, from the forward flow w (t-1 to t) and the backward flow w^ (t
 * to t-1), both at frame t's size. With w~(p) = w(p + w^(p)) (the forward
 * flow where p came from):
 *   occluded:        |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5
 *   motion boundary: |grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002
 * (w^ = (u^, v^); gradients by central differences, one-sided at the border).
 */
export function consistencyMasks(forward: FlowField, backward: FlowField): ConsistencyMasks {
  const { width: w, height: h } = backward;
  if (forward.width !== w || forward.height !== h) throw new RangeError('consistencyMasks: the flows differ in size');
  const n = w * h;
  const b = backward.data;
  const { image: fw, inside } = warp(forward.data, 2, backward);
  const outside = new Uint8Array(n);
  const occluded = new Uint8Array(n);
  const motionBoundary = new Uint8Array(n);
  const weights = new Float32Array(n);
  const component = (x: number, y: number, c: number) => b[2 * (y * w + x) + c];
  const derivative = (x: number, y: number, c: number, dx: number, dy: number) => {
    const [xa, ya] = [Math.max(0, x - dx), Math.max(0, y - dy)];
    const [xb, yb] = [Math.min(w - 1, x + dx), Math.min(h - 1, y + dy)];
    const span = dx ? xb - xa : yb - ya;
    return span > 0 ? (component(xb, yb, c) - component(xa, ya, c)) / span : 0;
  };
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const [u, v] = [b[2 * p], b[2 * p + 1]];
      const backSq = u * u + v * v;
      if (!inside[p]) outside[p] = 1;
      else {
        const [fu, fv] = [fw[2 * p], fw[2 * p + 1]];
        const [su, sv] = [fu + u, fv + v];
        if (su * su + sv * sv > 0.01 * (fu * fu + fv * fv + backSq) + 0.5) occluded[p] = 1;
      }
      let gradSq = 0;
      for (let c = 0; c < 2; c++) gradSq += derivative(x, y, c, 1, 0) ** 2 + derivative(x, y, c, 0, 1) ** 2;
      if (gradSq > 0.01 * backSq + 0.002) motionBoundary[p] = 1;
      weights[p] = outside[p] || occluded[p] || motionBoundary[p] ? 0 : 1;
    }
  return { outside, occluded, motionBoundary, weights };
}

/**
 * What frame t starts from and what its temporal term holds, in network
 * space: the previous result warped by the backward flow, and where it was
 * hidden or outside in frame t-1, the content frame (disoccluded pixels);
 * and the target of the temporal loss (the warped previous result) with its
 * weights.
 */
export interface FrameStart {
  readonly initial: Float32Array;
  readonly target: Float32Array;
  readonly weights: Float32Array;
  readonly masks: ConsistencyMasks;
}

export function frameStart(previous: Float32Array, content: Float32Array, forward: FlowField, backward: FlowField): FrameStart {
  const masks = consistencyMasks(forward, backward);
  const { image: target } = warp(previous, 3, backward);
  const initial = Float32Array.from(target);
  const n = backward.width * backward.height;
  for (let p = 0; p < n; p++)
    if (masks.outside[p] || masks.occluded[p]) for (let c = 0; c < 3; c++) initial[3 * p + c] = content[3 * p + c];
  return { initial, target, weights: masks.weights, masks };
}

/** A frame start carried to another size (a coarser scale of a coarse-to-fine render): images and weights resampled bilinearly. */
export function resizeFrameStart(start: Omit<FrameStart, 'masks'>, from: Size, to: Size): Omit<FrameStart, 'masks'> {
  if (from.width === to.width && from.height === to.height) return start;
  const n = from.width * from.height;
  const spread = new Float32Array(n * 3);
  for (let p = 0; p < n; p++) spread.fill(start.weights[p], 3 * p, 3 * p + 3);
  const resized = resizeBilinear(spread, 1, from, to);
  const weights = new Float32Array(to.width * to.height);
  for (let p = 0; p < weights.length; p++) weights[p] = resized[3 * p];
  return {
    initial: resizeBilinear(start.initial, 1, from, to),
    target: resizeBilinear(start.target, 1, from, to),
    weights,
  };
}

/**
 * The mean warping error between consecutive frames over the pixels that
 * `weights` keeps: mean over p with weights(p) > 0 of |a_t(p) - a_{t-1}(p + w^(p))|^2
 * per channel (images height x width x 3 in any units). The measure of
 * temporal consistency in bench/video.
 */
export function warpingError(previous: Float32Array, current: Float32Array, backward: FlowField, weights: Float32Array): number {
  const { image: warped, inside } = warp(previous, 3, backward);
  let sum = 0;
  let count = 0;
  for (let p = 0; p < weights.length; p++) {
    if (!(weights[p] > 0) || !inside[p]) continue;
    for (let c = 0; c < 3; c++) sum += (current[3 * p + c] - warped[3 * p + c]) ** 2;
    count += 3;
  }
  return count > 0 ? sum / count : 0;
}

/** The mean end-point error of a flow against the true one, over pixels where `mask` (optional) is 1. */
export function endPointError(flow: FlowField, truth: FlowField, mask?: Uint8Array): number {
  let sum = 0;
  let count = 0;
  for (let p = 0; p < flow.width * flow.height; p++) {
    if (mask && !mask[p]) continue;
    sum += Math.hypot(flow.data[2 * p] - truth.data[2 * p], flow.data[2 * p + 1] - truth.data[2 * p + 1]);
    count++;
  }
  return count > 0 ? sum / count : 0;
}
