/**
 * The geometry of nst video (video-flow.ts) on hand-made flows: warping (a
 * pure integer translation copies pixels exactly; a half-pixel one averages
 * neighbours), the forward-backward occlusion check and the motion-boundary
 * check of Ruder et al. (each at its threshold, from both sides), and the
 * start of a frame (warped where visible, the content where occluded).
 */
import { describe, expect, it } from 'vitest';
import { consistencyMasks, endPointError, frameStart, resizeFrameStart, warp, warpingError, type FlowField } from '../src/video-flow.js';

/** A flow of the same (dx, dy) everywhere. */
function uniform(width: number, height: number, dx: number, dy: number): FlowField {
  const data = new Float32Array(width * height * 2);
  for (let p = 0; p < width * height; p++) [data[2 * p], data[2 * p + 1]] = [dx, dy];
  return { width, height, data };
}

/** A flow from a function of the pixel. */
function field(width: number, height: number, f: (x: number, y: number) => [number, number]): FlowField {
  const data = new Float32Array(width * height * 2);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) [data[2 * (y * width + x)], data[2 * (y * width + x) + 1]] = f(x, y);
  return { width, height, data };
}

/** An image whose every value is distinct and not a round number. */
function ramp(width: number, height: number, channels = 3): Float32Array {
  const out = new Float32Array(width * height * channels);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(Math.sin(i * 0.731) * 100 + i * 0.0137);
  return out;
}

describe('warp', () => {
  it('copies every pixel exactly under a pure integer translation, and marks what comes from outside', () => {
    const [w, h] = [11, 7];
    const image = ramp(w, h);
    // Backward flow (+3, -2): pixel (x, y) takes the previous frame's (x + 3, y - 2).
    const { image: out, inside } = warp(image, 3, uniform(w, h, 3, -2));
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        const [sx, sy] = [x + 3, y - 2];
        const within = sx < w && sy >= 0;
        expect(inside[p]).toBe(within ? 1 : 0);
        for (let c = 0; c < 3; c++) expect(out[3 * p + c]).toBe(within ? image[3 * (sy * w + sx) + c] : 0);
      }
  });

  it('interpolates bilinearly between pixel centres', () => {
    const [w, h] = [4, 3];
    const image = ramp(w, h, 1);
    const { image: out, inside } = warp(image, 1, uniform(w, h, 0.5, 0.25));
    // Pixel (1, 1) samples (1.5, 1.25).
    const at = (x: number, y: number) => image[y * w + x];
    const want = 0.75 * (0.5 * at(1, 1) + 0.5 * at(2, 1)) + 0.25 * (0.5 * at(1, 2) + 0.5 * at(2, 2));
    expect(out[1 * w + 1]).toBeCloseTo(want, 4);
    // The last column would sample beyond the last pixel centre.
    expect(inside[1 * w + 3]).toBe(0);
  });

  it('reaches the last pixel centre exactly', () => {
    const image = ramp(5, 1, 1);
    const { image: out, inside } = warp(image, 1, uniform(5, 1, 4, 0));
    expect(inside[0]).toBe(1);
    expect(out[0]).toBe(image[4]);
  });
});

describe('the occlusion check (|w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5)', () => {
  it('finds no occlusion where the flows cancel: a pure translation, the band that entered the frame outside', () => {
    const [w, h] = [16, 9];
    const m = consistencyMasks(uniform(w, h, -3, 0), uniform(w, h, 3, 0));
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        expect(m.outside[p]).toBe(x + 3 > w - 1 ? 1 : 0);
        expect(m.occluded[p]).toBe(0);
        expect(m.motionBoundary[p]).toBe(0);
        expect(m.weights[p]).toBe(x + 3 > w - 1 ? 0 : 1);
      }
  });

  it('holds at its threshold: a mismatch just above it occludes, just below it does not', () => {
    // Backward flow (2, 0) everywhere; forward flow (-2 + e, 0): |w~ + w^|^2 = e^2 against
    // 0.01 ((2 - e)^2 + 4) + 0.5. Solve e^2 = 0.01 ((2 - e)^2 + 4) + 0.5 for e near 0.8.
    let e = 0.8;
    for (let k = 0; k < 50; k++) e = Math.sqrt(0.01 * ((2 - e) ** 2 + 4) + 0.5);
    for (const [delta, occluded] of [
      [0.01, 1],
      [-0.01, 0],
    ] as const) {
      const m = consistencyMasks(uniform(8, 4, -2 + e + delta, 0), uniform(8, 4, 2, 0));
      expect(m.occluded[0], `e ${e + delta}`).toBe(occluded);
      expect(m.weights[0]).toBe(occluded ? 0 : 1);
    }
  });

  it('finds the background a moving square covered: there the forward flow (the square moved) and the backward flow (the background stayed) disagree', () => {
    // A 4x4 square moves 4 px right between frames; the background is still.
    // In frame t the strip the square left (x 4..7 of rows 4..7) shows background
    // that was hidden in frame t-1: its backward flow is 0 (it is background),
    // but the forward flow at its place in t-1 is the square's (+4, 0).
    const [w, h] = [20, 14];
    const inSquareBefore = (x: number, y: number) => x >= 4 && x < 8 && y >= 4 && y < 8;
    const inSquareAfter = (x: number, y: number) => x >= 8 && x < 12 && y >= 4 && y < 8;
    const forward = field(w, h, (x, y) => (inSquareBefore(x, y) ? [4, 0] : [0, 0]));
    const backward = field(w, h, (x, y) => (inSquareAfter(x, y) ? [-4, 0] : [0, 0]));
    const m = consistencyMasks(forward, backward);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) expect(m.occluded[y * w + x], `(${x}, ${y})`).toBe(inSquareBefore(x, y) ? 1 : 0);
    // The square itself is consistent, but its edges are motion boundaries.
    expect(m.occluded[5 * w + 9]).toBe(0);
    expect(m.motionBoundary[5 * w + 8]).toBe(1);
    expect(m.motionBoundary[5 * w + 9]).toBe(0);
  });
});

describe('the motion-boundary check (|grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002)', () => {
  it('marks a step in the flow and not a smooth zoom', () => {
    const [w, h] = [12, 6];
    // A zoom of 1% a frame about the centre: gradients 0.01, far below the threshold.
    const zoom = field(w, h, (x, y) => [-0.01 * (x - 6), -0.01 * (y - 3)]);
    const inverse = field(w, h, (x, y) => [0.01 * (x - 6), 0.01 * (y - 3)]);
    expect(consistencyMasks(inverse, zoom).motionBoundary.every((v) => v === 0)).toBe(true);
    // A step of 1 px between the left and the right half.
    const step = field(w, h, (x) => [x < 6 ? 0 : 1, 0]);
    const back = field(w, h, (x) => [x < 6 ? 0 : -1, 0]);
    const m = consistencyMasks(step, back);
    for (let x = 0; x < w; x++) expect(m.motionBoundary[2 * w + x], `x ${x}`).toBe(x === 5 || x === 6 ? 1 : 0);
  });

  it('holds at its threshold', () => {
    // u^ = g x: central differences give grad u^ = (g, 0), so |grad|^2 = g^2 against 0.01 |w^|^2 + 0.002 at x = 0 (w^ = 0).
    const g0 = Math.sqrt(0.002);
    for (const [g, boundary] of [
      [g0 * 1.01, 1],
      [g0 * 0.99, 0],
    ] as const) {
      const back = field(5, 3, (x) => [g * (x - 2), 0]);
      const fwd = field(5, 3, (x) => [-g * (x - 2), 0]);
      expect(consistencyMasks(fwd, back).motionBoundary[1 * 5 + 2], `g ${g}`).toBe(boundary);
    }
  });
});

describe('frameStart', () => {
  it('starts from the warped previous result, and from the content where the pixel was occluded or outside', () => {
    const [w, h] = [10, 6];
    const previous = ramp(w, h);
    const content = new Float32Array(w * h * 3).fill(-7);
    const start = frameStart(previous, content, uniform(w, h, -2, 0), uniform(w, h, 2, 0));
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        const visible = x + 2 <= w - 1;
        for (let c = 0; c < 3; c++) {
          expect(start.initial[3 * p + c]).toBe(visible ? previous[3 * (y * w + x + 2) + c] : -7);
          if (visible) expect(start.target[3 * p + c]).toBe(previous[3 * (y * w + x + 2) + c]);
        }
        expect(start.weights[p]).toBe(visible ? 1 : 0);
      }
  });

  it('resizes to a coarser scale, weights staying in 0..1', () => {
    const [w, h] = [8, 6];
    const start = frameStart(ramp(w, h), ramp(w, h), uniform(w, h, -1, 0), uniform(w, h, 1, 0));
    const half = resizeFrameStart(start, { width: w, height: h }, { width: 4, height: 3 });
    expect(half.initial.length).toBe(4 * 3 * 3);
    expect(half.weights.length).toBe(4 * 3);
    expect(half.weights.every((c) => c >= 0 && c <= 1)).toBe(true);
    expect(half.weights[0]).toBe(1);
    expect(half.weights[3]).toBe(0.5); // the last column of the fine grid was outside
  });
});

describe('measures', () => {
  it('the warping error is 0 for frames that follow the flow exactly, and the mean squared difference otherwise', () => {
    const [w, h] = [9, 5];
    const previous = ramp(w, h);
    const backward = uniform(w, h, 1, 0);
    const { image: current } = warp(previous, 3, backward);
    const weights = consistencyMasks(uniform(w, h, -1, 0), backward).weights;
    expect(warpingError(previous, current, backward, weights)).toBe(0);
    const shifted = current.map((v) => v + 2);
    expect(warpingError(previous, shifted, backward, weights)).toBeCloseTo(4, 5);
  });

  it('the end-point error is the mean distance between flow vectors', () => {
    expect(endPointError(uniform(3, 2, 3, 4), uniform(3, 2, 0, 0))).toBe(5);
    const mask = new Uint8Array([1, 0, 0, 0, 0, 0]);
    expect(endPointError(uniform(3, 2, 1, 0), uniform(3, 2, 1, 0), mask)).toBe(0);
  });
});
