/**
 * vitest globalSetup. Under CI (CI=true) a missing engine fails the run with
 * its reason before any test starts, instead of the native suites skipping:
 * the native addon must have been built and must load. (The cuda engine needs
 * a GPU, which CI has not: its suites skip, saying why.)
 */
import { loadNativeAddon } from '../../packages/native/src/addon.js';

export default function requireEnginesUnderCi(): void {
  if (process.env.CI !== 'true') return;
  const loaded = loadNativeAddon();
  if (!loaded.ok) throw new Error(`CI=true and the native addon is not available, so the native tests cannot run: ${loaded.reason}`);
}
