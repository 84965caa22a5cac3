/** Spatial control on the cpu engine (fp32) against the float64 reference: masks-suite.ts. (bf16 refuses masks: cpu-bf16.test.ts.) */
import { masksSuite } from './masks-suite.js';
import { addon, skipReason } from './helpers.js';

masksSuite('cpu', addon ? '' : skipReason || 'native addon not loaded');
