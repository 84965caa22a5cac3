// bench/tiling's experiments (not tests: minutes each), with the repository's aliases.
import { defineConfig, mergeConfig } from 'vitest/config';
import root from '../../vitest.config.js';

export default mergeConfig(
  { ...root, test: { ...root.test, projects: undefined } },
  defineConfig({ test: { include: ['bench/tiling/*.test.ts'], root: '.' } }),
);
