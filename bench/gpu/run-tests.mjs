// Entry of the bundled GPU test (bundle.mjs): registers the tests of
// packages/native/test/cuda-suite.ts (cuda.test.ts's suite) with the vitest shim, then runs them.
import '../../packages/native/test/cuda-suite.ts';
import { runAll } from 'vitest';

process.exitCode = (await runAll()) > 0 ? 1 : 0;
