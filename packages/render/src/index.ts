export * from './image-file.js';
export * from './checkpoint.js';
export * from './parse.js';
export * from './job.js';
export * from './loop.js';
export * from './options.js';
export * from './inputs-outputs.js';
export * from './memory.js';
