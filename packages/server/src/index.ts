/**
 * @nst/server: rendering on many machines. The HTTP API and web page
 * (`nst serve`), the BullMQ queue on Redis, the shared store, and the
 * worker that renders queued jobs in batches (`nst worker`).
 */
export * from './store.js';
export * from './s3-store.js';
export * from './open-store.js';
export * from './queue.js';
export * from './http.js';
export { PixelGate } from './decode.js';
export * from './worker.js';
export * from './users.js';
export { expireStored } from './retention.js';
export { inUserWords } from './failure-words.js';
