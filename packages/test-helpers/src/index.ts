/** One copy of each test helper, for the tests of every package and the cross-package tests in test/. */
export { repoRoot, underCi, available, sharedWeights, sharedImages, sharedAvailable, skip } from './environment.js';
export { relL2, relDiff } from '@nst/core';
export { REDUCED_LOSS, REDUCED_FLAGS } from './presets.js';
export { nstBin, cliBuilt, nst, nstAsync, jsonLines, type CliResult } from './cli.js';
export { tempDir, newDir, writeTestImage, gitLsFiles } from './files.js';
