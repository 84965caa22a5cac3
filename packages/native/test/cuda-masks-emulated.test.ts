/**
 * Spatial control on the cuda engine, on the CPU stand-in (native/emulation),
 * against the float64 reference: masks-suite.ts. Under CI a missing emulated
 * build fails the suite.
 */
import './use-cuda-emulation.js';
import { masksSuite } from './masks-suite.js';
import { cudaUnavailableReason } from './helpers.js';

const reason = cudaUnavailableReason();
if (reason && process.env.CI === 'true') throw new Error(`the emulated cuda engine cannot run under CI: ${reason}`);
masksSuite('cuda', reason);
