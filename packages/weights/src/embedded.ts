/**
 * The weight set shipped inside the project: VGG-19's first three blocks
 * (conv1_1 .. conv3_4) of the Keras release of Oxford VGG's weights (CC BY
 * 4.0, credited in assets/NOTICE), one safetensors file whose SHA-256 is
 * checked at every load. With it `nst render` gives a real, if shallower,
 * stylisation before anything is downloaded. The loss layers it suits
 * (content conv3_2; style conv1_1, conv2_1, conv3_1) are recorded in the
 * file itself (metadata "default_layers", WeightSet.defaultLayers).
 */
import { fileURLToPath } from 'node:url';
import { UserError } from '@nst/core';
import { sha256File } from './cache.js';

/** What names the embedded set where a weight file is expected (`--weights embedded`). */
export const EMBEDDED_SOURCE = 'embedded';
export const EMBEDDED_FILE_NAME = 'vgg19-keras-blocks1-3.safetensors';
/** Of the file as committed; a different hash means a damaged or replaced file. */
export const EMBEDDED_SHA256 = '8425397cc6088d79682b5dc9fdebf0c1b96d9cd2dedf923445fb1ca17b2fd96a';

/** assets/ sits beside dist/ and src/ in the package, so the same URL works from either. */
export function embeddedWeightsPath(): string {
  return fileURLToPath(new URL(`../assets/${EMBEDDED_FILE_NAME}`, import.meta.url));
}

/** The embedded file's path once its SHA-256 matches; a UserError saying how to restore it otherwise. */
export async function verifiedEmbeddedPath(): Promise<string> {
  const path = embeddedWeightsPath();
  await verifySha256(path, EMBEDDED_SHA256, 'the built-in weights');
  return path;
}

/** Throws a one-line UserError unless the file at `path` has the SHA-256 `expected`. */
export async function verifySha256(path: string, expected: string, what: string): Promise<void> {
  const actual = await sha256File(path).catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`${path}: ${what} cannot be read (${e.code ?? e.message}); restore the file from the repository`, {
      code: 'not-found',
      field: 'weights',
    });
  });
  if (actual !== expected)
    throw new UserError(`${path}: ${what} are damaged (SHA-256 ${actual}, expected ${expected}); restore the file from the repository`, {
      code: 'unreadable',
      field: 'weights',
    });
}
