import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

// Tests import workspace packages from their TypeScript sources, so `vitest run`
// needs no build of the package under test (the CLI end-to-end tests run the
// built binary and rely on `turbo run build` having run first).
const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));
const packages = ['core', 'files', 'job', 'weights', 'tfjs', 'native', 'batch', 'server', 'cli', 'test-helpers'];

/**
 * Two speeds. `unit` (npm run test:unit, for every save): the packages' own
 * tests, each a module or an engine in this process. `e2e`: what starts real
 * processes and services (the built CLI, redis-server, a browser, the
 * server) and the CUDA engine on its CPU stand-in, which is slow. `npm test`
 * and CI run both.
 */
const E2E = [
  'test/!(repo).test.ts',
  'packages/server/test/**/*.test.ts',
  'packages/native/test/cuda-*.test.ts',
  // These start processes (a fresh one per measured session) or run the pipeline with its files.
  'packages/native/test/cpu-memory-plan.test.ts',
  'packages/native/test/cpu-tiled-resume.test.ts',
  'packages/tfjs/test/wasm-threads-start.test.ts',
];
const FAST_SHARED = ['test/reference/**/*.test.ts', 'test/repo.test.ts'];

export default defineConfig({
  resolve: {
    alias: packages.map((pkg) => ({ find: new RegExp(`^@nst/${pkg}$`), replacement: src(pkg) })),
  },
  test: {
    // Under CI a native addon that is missing fails the run; every run ends with what was skipped and why.
    globalSetup: ['test/setup/ci-engines.ts'],
    reporters: ['default', './test/setup/skip-summary.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['packages/*/test/**/*.test.ts', ...FAST_SHARED], exclude: E2E },
      },
      {
        extends: true,
        test: { name: 'e2e', include: E2E },
      },
    ],
  },
});
