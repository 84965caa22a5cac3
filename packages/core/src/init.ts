import type { ImageTensor } from './backend.js';
import { UserError } from './errors.js';
import { pixelUnit } from './pixels.js';
import { Rng } from './rng.js';
import type { Preprocessing } from './weights.js';

/**
 * Where the optimisation starts:
 *   noise   - the notebook's: noise uniform in [-20, 20] pixel levels, mixed
 *             noiseRatio * noise + (1 - noiseRatio) * content (0.6 by default),
 *             in the mean-subtracted space
 *   content - the content image itself
 *   random  - noise alone
 *   image   - another image (already loaded at the output size)
 */
export type InitSpec =
  | { kind: 'noise'; noiseRatio: number }
  | { kind: 'content' }
  | { kind: 'random' }
  | { kind: 'image'; image: ImageTensor };

export const NOISE_AMPLITUDE = 20;
export const DEFAULT_NOISE_RATIO = 0.6;

export function initialImage(spec: InitSpec, content: ImageTensor, pre: Preprocessing, seed: number): Float32Array {
  const n = content.width * content.height;
  switch (spec.kind) {
    case 'content':
      return Float32Array.from(content.data);
    case 'image':
      if (spec.image.width !== content.width || spec.image.height !== content.height)
        throw new UserError(`the image is ${spec.image.width}x${spec.image.height}, expected ${content.width}x${content.height}`, {
          field: 'init',
        });
      return Float32Array.from(spec.image.data);
    case 'noise':
    case 'random': {
      const ratio = spec.kind === 'random' ? 1 : spec.noiseRatio;
      if (!(ratio >= 0 && ratio <= 1)) throw new UserError(`${ratio} is not in 0..1`, { field: 'noiseRatio' });
      const unit = pixelUnit(pre);
      const rng = new Rng(seed);
      const out = new Float32Array(n * 3);
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < 3; c++) {
          const noise = rng.range(-NOISE_AMPLITUDE, NOISE_AMPLITUDE) * unit[c];
          out[3 * i + c] = ratio * noise + (1 - ratio) * content.data[3 * i + c];
        }
      }
      return out;
    }
  }
}
