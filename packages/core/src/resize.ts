/**
 * Bilinear resampling of a batch of HWC float images (half-pixel centres, as
 * OpenCV's INTER_LINEAR and tf.image.resize(bilinear, half_pixel_centers)):
 * how a coarse-to-fine render carries one scale's result to the next.
 */
export function resizeBilinear(
  images: Float32Array,
  batch: number,
  from: { width: number; height: number },
  to: { width: number; height: number },
): Float32Array {
  const [fw, fh, tw, th] = [from.width, from.height, to.width, to.height];
  if (images.length !== batch * fw * fh * 3) throw new RangeError('resizeBilinear: images do not match the size');
  const out = new Float32Array(batch * tw * th * 3);
  const axis = (t: number, fromN: number, toN: number) => {
    const s = Math.min(Math.max(((t + 0.5) * fromN) / toN - 0.5, 0), fromN - 1);
    const i0 = Math.floor(s);
    return { i0, i1: Math.min(i0 + 1, fromN - 1), f: s - i0 };
  };
  for (let b = 0; b < batch; b++) {
    const src = b * fw * fh * 3;
    const dst = b * tw * th * 3;
    for (let y = 0; y < th; y++) {
      const { i0: y0, i1: y1, f: fy } = axis(y, fh, th);
      for (let x = 0; x < tw; x++) {
        const { i0: x0, i1: x1, f: fx } = axis(x, fw, tw);
        for (let c = 0; c < 3; c++) {
          const at = (yy: number, xx: number) => images[src + (yy * fw + xx) * 3 + c];
          const top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx;
          const bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx;
          out[dst + (y * tw + x) * 3 + c] = top * (1 - fy) + bottom * fy;
        }
      }
    }
  }
  return out;
}
