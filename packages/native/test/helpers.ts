/** Shared by the native tests: the addon (or why it is absent). */
import { loadNativeAddon, type NativeAddon, type NativeSessionConfig } from '@nst/native';
import { available } from '@nst/test-helpers';

export { relDiff, relL2 } from '@nst/test-helpers';

const loaded = loadNativeAddon();
export const skipReason = loaded.ok ? '' : loaded.reason;
// Under CI the addon must load (its build is strict there): a missing one fails these tests instead of skipping them.
const present = available(loaded.ok, `native tests: ${skipReason}`);
export const addon: NativeAddon | undefined = present && loaded.ok ? loaded.addon : undefined;

/** Why the cuda engine cannot run here ('' when it can): the stand-in's with NST_CUDA_EMULATION=1. */
export function cudaUnavailableReason(): string {
  if (!addon) return 'native addon not loaded';
  try {
    addon.createEngine('cuda', { precision: 'fp32' }).dispose();
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

/** A small loss over conv1_1 .. conv2_2 (content conv2_2, style conv1_1 and conv2_1): four layers of weights. */
export const BLOCKS_1_2_LOSS: NativeSessionConfig['loss'] = {
  content: [{ convIndex: 3, weight: 1 }],
  style: [
    { convIndex: 0, weight: 0.5 },
    { convIndex: 2, weight: 0.5 },
  ],
};
