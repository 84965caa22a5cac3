import { recombineChroma, toLevels, type ImageTensor, type Preprocessing, type RgbImage, type RgbLevels } from '@nst/core';
import { savePixels, type OutputPixels } from './image-file.js';
import type { FileSettings, FileState, ResultSettings } from './settings.js';

/** How one job's optimised image becomes a file. */
export interface ItemOutput {
  /** Bits per channel: 8 (default) or 16 (.png, .tif). */
  readonly bitDepth?: 8 | 16;
  /** Luminance mode: the content (at the output size) whose chroma the output takes. */
  readonly chromaFrom?: RgbImage;
  /** The content's alpha at the output size, passed through (undefined: opaque). */
  readonly alpha?: Uint8Array;
  /** An ICC profile to convert the output to and embed (the content's, kept); undefined: sRGB. */
  readonly icc?: Uint8Array;
  /** The job's settings, recorded in the file (undefined: none). */
  readonly settings?: ResultSettings;
}

/** Writes an optimised image (network space) to `file`; `state` says what the file is, recorded with the job's settings. */
export async function saveRendered(
  file: string,
  tensor: ImageTensor,
  pre: Preprocessing,
  output: ItemOutput,
  state?: FileState,
): Promise<void> {
  let levels: RgbLevels = toLevels(tensor, pre);
  if (output.chromaFrom) levels = recombineChroma(levels, output.chromaFrom);
  const settings: FileSettings | undefined = output.settings && state && { ...output.settings, ...state };
  await savePixels(file, quantise(levels, output.bitDepth ?? 8, output.alpha), {
    icc: output.icc,
    settings: settings && JSON.stringify(settings),
  });
}

/** Levels 0..255 to 8- or 16-bit pixels (rounded, clipped), with the alpha channel when given. */
export function quantise(levels: RgbLevels, bitDepth: 8 | 16, alpha?: Uint8Array): OutputPixels {
  const n = levels.width * levels.height;
  const channels = alpha ? 4 : 3;
  const max = bitDepth === 16 ? 65535 : 255;
  const scale = max / 255;
  const data = bitDepth === 16 ? new Uint16Array(n * channels) : new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.round(levels.data[3 * i + c] * scale);
      data[channels * i + c] = v < 0 ? 0 : v > max ? max : v;
    }
    if (alpha) data[channels * i + 3] = Math.round(alpha[i] * scale);
  }
  return { width: levels.width, height: levels.height, channels, data };
}
