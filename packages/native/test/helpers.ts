/** Shared by the native tests: the addon (or why it is absent) and comparison helpers. */
import { loadNativeAddon, type NativeAddon } from '@nst/native';

const loaded = loadNativeAddon();
export const addon: NativeAddon | undefined = loaded.ok ? loaded.addon : undefined;
export const skipReason = loaded.ok ? '' : loaded.reason;
if (!loaded.ok) console.log(`native tests skipped: ${loaded.reason}`);

export { relDiff, relL2 } from '@nst/native';
