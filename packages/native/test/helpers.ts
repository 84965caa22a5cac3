/** Shared by the native tests: the addon (or why it is absent). */
import { loadNativeAddon, type NativeAddon } from '@nst/native';

export { relDiff, relL2 } from '@nst/test-helpers';

const loaded = loadNativeAddon();
export const addon: NativeAddon | undefined = loaded.ok ? loaded.addon : undefined;
export const skipReason = loaded.ok ? '' : loaded.reason;
if (!loaded.ok) console.log(`native tests skipped: ${loaded.reason}`);
