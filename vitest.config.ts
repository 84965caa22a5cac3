import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

// Tests import workspace packages from their TypeScript sources, so `vitest run`
// needs no build of the package under test (the CLI end-to-end tests run the
// built binary and rely on `turbo run build` having run first).
const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@nst/core': src('core'),
      '@nst/files': src('files'),
      '@nst/job': src('job'),
      '@nst/weights': src('weights'),
      '@nst/tfjs': src('tfjs'),
      '@nst/native': src('native'),
      '@nst/batch': src('batch'),
      '@nst/server': src('server'),
      '@nst/cli': src('cli'),
      '@nst/test-helpers': src('test-helpers'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Under CI a native addon that is missing fails the run; every run ends with what was skipped and why.
    globalSetup: ['test/setup/ci-engines.ts'],
    reporters: ['default', './test/setup/skip-summary.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
