// Entry of the bundled GPU test (bundle.mjs): registers the tests of
// packages/native/test/cuda.test.ts with the vitest shim, then runs them.
import '../../packages/native/test/cuda.test.ts';
import { runAll } from 'vitest';

process.exitCode = (await runAll()) > 0 ? 1 : 0;
