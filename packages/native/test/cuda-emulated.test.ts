/**
 * The whole cuda engine on the CPU stand-in (native/emulation, built by
 * npm ci as native/build-emulated) against the cpu engine: cuda-suite.ts at
 * small sizes. Under CI a missing emulated build fails the suite.
 */
import './use-cuda-emulation.js';
import './cuda-suite.js';
