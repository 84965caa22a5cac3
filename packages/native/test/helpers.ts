/** Shared by the native tests: the addon (or why it is absent) and comparison helpers. */
import { loadNativeAddon, type NativeAddon } from '@nst/native';

const loaded = loadNativeAddon();
export const addon: NativeAddon | undefined = loaded.ok ? loaded.addon : undefined;
export const skipReason = loaded.ok ? '' : loaded.reason;
if (!loaded.ok) console.log(`native tests skipped: ${loaded.reason}`);

/** ||a - b|| / ||b|| */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relL2: lengths ${a.length} and ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

export function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}
