/** Shared by the native tests: the addon (or why it is absent). */
import { loadNativeAddon, type NativeAddon } from '@nst/native';
import { available } from '@nst/test-helpers';

export { relDiff, relL2 } from '@nst/test-helpers';

const loaded = loadNativeAddon();
export const skipReason = loaded.ok ? '' : loaded.reason;
// Under CI the addon must load (its build is strict there): a missing one fails these tests instead of skipping them.
const present = available(loaded.ok, `native tests: ${skipReason}`);
export const addon: NativeAddon | undefined = present && loaded.ok ? loaded.addon : undefined;
