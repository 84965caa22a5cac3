export * from './errors.js';
export * from './vgg.js';
export * from './weights.js';
export * from './rng.js';
export * from './loss.js';
export * from './adam.js';
export * from './backend.js';
