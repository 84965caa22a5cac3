/**
 * How two weight sets' kernels relate: for one layer, which of the eight
 * symmetries of the 3x3 grid (identity, transpose, flips, rotations), with or
 * without the input channels reversed (RGB vs BGR), maps kernel a onto
 * kernel b. Used to settle axis-order questions between real files (see
 * MATCONVNET.md): the same trained filters match one relation to float
 * precision and no other.
 */
import type { ConvWeights } from '@nst/core';

/** (h, w) -> the position it moves to, for each symmetry of the 3x3 grid. */
const SYMMETRIES: ReadonlyArray<[string, (h: number, w: number) => [number, number]]> = [
  ['identity', (h, w) => [h, w]],
  ['transpose (swap height and width)', (h, w) => [w, h]],
  ['flip vertically', (h, w) => [2 - h, w]],
  ['flip horizontally', (h, w) => [h, 2 - w]],
  ['rotate 180', (h, w) => [2 - h, 2 - w]],
  ['anti-transpose', (h, w) => [2 - w, 2 - h]],
  ['rotate 90', (h, w) => [w, 2 - h]],
  ['rotate 270', (h, w) => [2 - w, h]],
];

export interface KernelRelation {
  readonly symmetry: string;
  readonly channelsReversed: boolean;
  /** max |a transformed - b| over the kernel, relative to max |b|. */
  readonly relativeError: number;
}

/** All 16 relations of kernel `a` to kernel `b` (same shape), best first. */
export function compareKernels(a: ConvWeights, b: ConvWeights): KernelRelation[] {
  if (a.inChannels !== b.inChannels || a.outChannels !== b.outChannels) return [];
  const I = a.inChannels;
  const O = a.outChannels;
  const scale = b.kernel.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
  const out: KernelRelation[] = [];
  for (const [symmetry, move] of SYMMETRIES)
    for (const channelsReversed of [false, true]) {
      let err = 0;
      for (let h = 0; h < 3; h++)
        for (let w = 0; w < 3; w++) {
          const [h2, w2] = move(h, w);
          for (let i = 0; i < I; i++) {
            const i2 = channelsReversed ? I - 1 - i : i;
            for (let o = 0; o < O; o++)
              err = Math.max(err, Math.abs(a.kernel[((h * 3 + w) * I + i) * O + o] - b.kernel[((h2 * 3 + w2) * I + i2) * O + o]));
          }
        }
      out.push({ symmetry, channelsReversed, relativeError: err / scale });
    }
  return out.sort((x, y) => x.relativeError - y.relativeError);
}
