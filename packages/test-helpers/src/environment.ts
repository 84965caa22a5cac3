import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** CI=true: what a test needs must be there (a missing engine or data set fails, never skips). */
export const underCi = process.env.CI === 'true';

/**
 * Whether a test's prerequisite is here. Outside CI a missing one skips the
 * tests that need it, with the reason printed; under CI it is an error
 * (thrown while the test file loads, so the file fails).
 */
export function available(present: boolean, missing: string): boolean {
  if (present) return true;
  if (underCi) throw new Error(`CI=true and ${missing}`);
  console.log(`skipped: ${missing}`);
  return false;
}

/** ../shared beside the checkout (present for developers and CI, absent for users). */
export const sharedDir = path.resolve(repoRoot, '..', 'shared');
/** The real VGG-19 blocks 1-3 (conv1_1 .. conv3_4) as a TF.js layers model. */
export const sharedWeights = path.join(sharedDir, 'weights', 'vgg19-keras-blocks1-3');
export const sharedImages = path.join(sharedDir, 'images');

const sharedMarker = { weights: path.join(sharedWeights, 'model.json'), images: path.join(sharedImages, 'tubingen.jpg') };

/** `available` for ../shared's real weights or images. */
export function sharedAvailable(what: 'weights' | 'images'): boolean {
  return available(existsSync(sharedMarker[what]), `${sharedMarker[what]} is absent`);
}

/**
 * Skips the running test, saying why: the reason is printed (the run ends
 * with every reason: test/setup/skip-summary.ts) and the test counts as
 * skipped, not passed.
 */
export function skip(ctx: { skip(note?: string): never }, why: string): never {
  console.log(`skipped: ${why}`);
  return ctx.skip(why);
}
