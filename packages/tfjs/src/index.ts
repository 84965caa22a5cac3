export { createTfjsBackend, TfjsBackend } from './backend.js';
export { selectTfjsBackend, TFJS_KINDS } from './load.js';
export type { Tf, TfjsKind, TfjsLoadOptions, TfjsSelection } from './load.js';
