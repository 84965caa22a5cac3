/**
 * Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2016,
 * "Preserving color in neural artistic style transfer"). Images here are
 * RGB levels 0..255 (float or 8-bit), row-major, 3 values per pixel.
 *
 * - Luminance-only transfer: the network sees luminance images (Y in all
 *   three channels; the style's Y matched to the content's mean and standard
 *   deviation), and the output's Y is recombined with the content's chroma
 *   (YIQ), so the output has exactly the content's colours.
 * - Colour histogram matching: before optimisation the style's colours are
 *   mapped by x' = A (x - mu_S) + mu_C with A = Sigma_C^1/2 Sigma_S^-1/2
 *   (symmetric square roots, the "image analogies" variant the paper
 *   prefers), so their mean and covariance equal the content's.
 */

/** RGB levels: 8-bit pixels or float levels alike. */
export interface RgbLevels {
  readonly width: number;
  readonly height: number;
  readonly data: ArrayLike<number>;
}

/** A float RGB image, levels 0..255 (not rounded). */
export interface RgbFloatImage {
  readonly width: number;
  readonly height: number;
  readonly data: Float32Array;
}

/** RGB -> YIQ (FCC NTSC). Y's row sums to 1, I's and Q's to 0. */
export const RGB_TO_YIQ: readonly number[] = [0.299, 0.587, 0.114, 0.595716, -0.274453, -0.321263, 0.211456, -0.522591, 0.311135];
export const YIQ_TO_RGB: readonly number[] = invert3(RGB_TO_YIQ);

function yiq(d: ArrayLike<number>, i: number): [number, number, number] {
  const [r, g, b] = [d[3 * i], d[3 * i + 1], d[3 * i + 2]];
  const m = RGB_TO_YIQ;
  return [m[0] * r + m[1] * g + m[2] * b, m[3] * r + m[4] * g + m[5] * b, m[6] * r + m[7] * g + m[8] * b];
}

/** The luminance Y of each pixel. */
export function luminance(image: RgbLevels): Float64Array {
  const n = image.width * image.height;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = yiq(image.data, i)[0];
  return out;
}

/**
 * A grey image (Y, Y, Y) of `image`'s luminance; with `like`, the luminance
 * is first matched to like's mean and standard deviation (the style's to the content's).
 */
export function luminanceImage(image: RgbLevels, like?: RgbLevels): RgbFloatImage {
  let y = luminance(image);
  if (like) {
    const [mu, sigma] = meanStd(y);
    const [muT, sigmaT] = meanStd(luminance(like));
    const k = sigma > 0 ? sigmaT / sigma : 0;
    y = y.map((v) => k * (v - mu) + muT);
  }
  const out = new Float32Array(y.length * 3);
  for (let i = 0; i < y.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = y[i];
  return { width: image.width, height: image.height, data: out };
}

/**
 * The output's luminance with the content's chroma (I, Q), back in RGB. Y
 * is clamped to the range that keeps every channel in 0..255 with that
 * chroma (the content's own Y is always in it), so the chroma survives
 * exactly instead of being bent by clipping.
 */
export function recombineChroma(output: RgbLevels, content: RgbLevels): RgbFloatImage {
  const n = output.width * output.height;
  if (content.width !== output.width || content.height !== output.height) throw new RangeError('recombineChroma: sizes differ');
  const inv = YIQ_TO_RGB;
  const out = new Float32Array(n * 3);
  for (let p = 0; p < n; p++) {
    const y = yiq(output.data, p)[0];
    const [, i, q] = yiq(content.data, p);
    const off = [0, 1, 2].map((c) => inv[3 * c + 1] * i + inv[3 * c + 2] * q);
    const lo = Math.max(-off[0], -off[1], -off[2]);
    const hi = Math.min(255 - off[0], 255 - off[1], 255 - off[2]);
    const yc = Math.min(Math.max(y, lo), Math.max(lo, hi));
    for (let c = 0; c < 3; c++) out[3 * p + c] = inv[3 * c] * yc + off[c];
  }
  return { width: output.width, height: output.height, data: out };
}

/** Mean (3) and covariance (3x3, row-major, divided by n) of the RGB values. */
export function colourStatistics(image: RgbLevels): { mean: number[]; cov: number[] } {
  const n = image.width * image.height;
  const d = image.data;
  const mean = [0, 0, 0];
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) mean[c] += d[3 * i + c] / n;
  const cov = new Array(9).fill(0);
  for (let i = 0; i < n; i++)
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) cov[3 * a + b] += ((d[3 * i + a] - mean[a]) * (d[3 * i + b] - mean[b])) / n;
  return { mean, cov };
}

/**
 * `source` recoloured so that its RGB mean and covariance are `target`'s:
 * x' = A (x - mu_S) + mu_T, A = Sigma_T^1/2 Sigma_S^-1/2. Not clipped (the
 * caller decides); `epsilon` regularises a flat source (a grey image).
 */
export function matchColourStatistics(source: RgbLevels, target: RgbLevels, epsilon = 1e-3): RgbFloatImage {
  const s = colourStatistics(source);
  const t = colourStatistics(target);
  const reg = (cov: number[]) => cov.map((v, k) => (k % 4 === 0 ? v + epsilon : v));
  const a = mul3(symmetricPower(reg(t.cov), 0.5), symmetricPower(reg(s.cov), -0.5));
  const n = source.width * source.height;
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const x = [0, 1, 2].map((c) => source.data[3 * i + c] - s.mean[c]);
    for (let c = 0; c < 3; c++) out[3 * i + c] = a[3 * c] * x[0] + a[3 * c + 1] * x[1] + a[3 * c + 2] * x[2] + t.mean[c];
  }
  return { width: source.width, height: source.height, data: out };
}

/** M^p for a symmetric positive-definite 3x3 M, by Jacobi eigendecomposition: V diag(lambda^p) V'. */
export function symmetricPower(m: readonly number[], p: number): number[] {
  const a = [...m];
  const v = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = a[1] ** 2 + a[2] ** 2 + a[5] ** 2;
    if (off < 1e-30 * (a[0] ** 2 + a[4] ** 2 + a[8] ** 2)) break;
    for (const [i, j] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ]) {
      const aij = a[3 * i + j];
      if (aij === 0) continue;
      // Rotate rows/columns i, j so that a[i][j] becomes 0.
      const theta = (a[3 * j + j] - a[3 * i + i]) / (2 * aij);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      for (let k = 0; k < 3; k++) {
        const [aki, akj] = [a[3 * k + i], a[3 * k + j]];
        a[3 * k + i] = c * aki - s * akj;
        a[3 * k + j] = s * aki + c * akj;
      }
      for (let k = 0; k < 3; k++) {
        const [aik, ajk] = [a[3 * i + k], a[3 * j + k]];
        a[3 * i + k] = c * aik - s * ajk;
        a[3 * j + k] = s * aik + c * ajk;
      }
      for (let k = 0; k < 3; k++) {
        const [vki, vkj] = [v[3 * k + i], v[3 * k + j]];
        v[3 * k + i] = c * vki - s * vkj;
        v[3 * k + j] = s * vki + c * vkj;
      }
    }
  }
  const lambda = [a[0], a[4], a[8]].map((l) => Math.max(l, 1e-12) ** p);
  const out = new Array(9).fill(0);
  for (let r = 0; r < 3; r++)
    for (let c = 0; c < 3; c++) for (let k = 0; k < 3; k++) out[3 * r + c] += v[3 * r + k] * lambda[k] * v[3 * c + k];
  return out;
}

function mul3(a: readonly number[], b: readonly number[]): number[] {
  const out = new Array(9).fill(0);
  for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) for (let k = 0; k < 3; k++) out[3 * r + c] += a[3 * r + k] * b[3 * k + c];
  return out;
}

function invert3(m: readonly number[]): number[] {
  const [a, b, c, d, e, f, g, h, i] = m;
  const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  return [
    e * i - f * h,
    c * h - b * i,
    b * f - c * e,
    f * g - d * i,
    a * i - c * g,
    c * d - a * f,
    d * h - e * g,
    b * g - a * h,
    a * e - b * d,
  ].map((v) => v / det);
}

function meanStd(x: Float64Array): [number, number] {
  let mu = 0;
  for (const v of x) mu += v / x.length;
  let varSum = 0;
  for (const v of x) varSum += (v - mu) ** 2;
  return [mu, Math.sqrt(varSum / x.length)];
}
