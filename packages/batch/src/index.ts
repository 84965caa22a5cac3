/**
 * @nst/batch: many render jobs on one machine. A manifest (JSON Lines or CSV,
 * one job a line), packing of compatible jobs into engine batches, and the
 * runner that skips finished outputs, resumes checkpointed ones and lets a
 * bad job fail alone.
 */
export * from './csv.js';
export * from './manifest.js';
export * from './pack.js';
export * from './run.js';
