import { describe, expect, it } from 'vitest';
import { luminanceImage, matchColourStatistics, recombineChroma, symmetricPower } from '@nst/core';
import { testImage } from '../../../test/reference/random-weights.js';

// YIQ as the FCC defines it, written here independently of core.
const yiq = (r: number, g: number, b: number) => [
  0.299 * r + 0.587 * g + 0.114 * b,
  0.595716 * r - 0.274453 * g - 0.321263 * b,
  0.211456 * r - 0.522591 * g + 0.311135 * b,
];

/** A photo-like random image: smooth-ish colours with a dominant hue. */
function image(seed: number, w: number, h: number, tint: [number, number, number]) {
  const noise = testImage(seed, w * h * 3, 0, 1);
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    const base = 40 + 160 * noise[3 * i];
    for (let c = 0; c < 3; c++) data[3 * i + c] = Math.round(Math.min(255, Math.max(0, base * tint[c] + 40 * noise[3 * i + c])));
  }
  return { width: w, height: h, data };
}

/** Mean and covariance in float64, the plain way. */
function stats(d: ArrayLike<number>) {
  const n = d.length / 3;
  const mean = [0, 1, 2].map((c) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[3 * i + c];
    return s / n;
  });
  const cov: number[] = [];
  for (let a = 0; a < 3; a++)
    for (let b = 0; b < 3; b++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += (d[3 * i + a] - mean[a]) * (d[3 * i + b] - mean[b]);
      cov.push(s / n);
    }
  return { mean, cov };
}

describe('colour preservation', () => {
  it("recombination: the 8-bit output's chroma (I, Q) equals the content's within one level", () => {
    const content = image(1, 40, 30, [1, 0.6, 0.3]);
    const output = image(2, 40, 30, [0.2, 0.5, 1]); // a stylised output in other colours
    const rgb = recombineChroma(output, content);
    let worst = 0;
    let lumaErr = 0;
    for (let p = 0; p < 40 * 30; p++) {
      const px = [0, 1, 2].map((c) => Math.min(255, Math.max(0, Math.round(rgb.data[3 * p + c]))));
      const got = yiq(px[0], px[1], px[2]);
      const want = yiq(content.data[3 * p], content.data[3 * p + 1], content.data[3 * p + 2]);
      worst = Math.max(worst, Math.abs(got[1] - want[1]), Math.abs(got[2] - want[2]));
      const outY = yiq(output.data[3 * p], output.data[3 * p + 1], output.data[3 * p + 2])[0];
      lumaErr = Math.max(lumaErr, Math.abs(got[0] - outY));
    }
    console.log(
      `luminance recombination: max chroma error ${worst.toFixed(3)} levels, max luma change ${lumaErr.toFixed(2)} levels (gamut clamp)`,
    );
    expect(worst).toBeLessThanOrEqual(1);
  });

  it("the style's luminance is matched to the content's mean and standard deviation", () => {
    const content = image(3, 30, 20, [1, 1, 1]);
    const style = image(4, 25, 25, [0.3, 0.3, 0.9]);
    const grey = luminanceImage(style, content);
    const y = (d: ArrayLike<number>, i: number) => yiq(d[3 * i], d[3 * i + 1], d[3 * i + 2])[0];
    const ms = (f: (i: number) => number, n: number) => {
      const v = Array.from({ length: n }, (_, i) => f(i));
      const m = v.reduce((a, b) => a + b, 0) / n;
      return [m, Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / n)];
    };
    const [mc, sc] = ms((i) => y(content.data, i), 600);
    const [mg, sg] = ms((i) => grey.data[3 * i], 625);
    expect(grey.data[0]).toBe(grey.data[1]);
    expect(Math.abs(mg - mc) / mc).toBeLessThan(1e-6);
    expect(Math.abs(sg - sc) / sc).toBeLessThan(1e-6);
  });

  it("histogram matching: the style's channel means and covariance become the content's (within 1%)", () => {
    const content = image(5, 40, 30, [1, 0.7, 0.4]);
    const style = image(6, 50, 40, [0.3, 0.4, 1]);
    const matched = matchColourStatistics(style, content);
    const got = stats(matched.data);
    const want = stats(content.data);
    const meanErr = Math.max(...got.mean.map((m, c) => Math.abs(m - want.mean[c]) / Math.abs(want.mean[c])));
    const scale = Math.max(...want.cov.map(Math.abs));
    const covErr = Math.max(...got.cov.map((v, k) => Math.abs(v - want.cov[k]) / scale));
    console.log(
      `histogram matching: mean rel error ${meanErr.toExponential(2)}, covariance error ${covErr.toExponential(2)} (of the largest entry)`,
    );
    expect(meanErr).toBeLessThan(0.01);
    expect(covErr).toBeLessThan(0.01);
  });

  it('the symmetric square root squares back to the matrix and the inverse root inverts it', () => {
    const m = [4, 1.5, 0.3, 1.5, 3, -0.7, 0.3, -0.7, 2];
    const r = symmetricPower(m, 0.5);
    const ri = symmetricPower(m, -0.5);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) {
        let rr = 0;
        let rri = 0;
        for (let k = 0; k < 3; k++) {
          rr += r[3 * i + k] * r[3 * k + j];
          rri += r[3 * i + k] * ri[3 * k + j];
        }
        expect(rr).toBeCloseTo(m[3 * i + j], 10);
        expect(rri).toBeCloseTo(i === j ? 1 : 0, 10);
      }
  });
});
