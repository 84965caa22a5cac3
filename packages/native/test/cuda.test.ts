/** The cuda engine on a real GPU against the cpu engine (skips, saying why, without one): see cuda-suite.ts. */
import './cuda-suite.js';
