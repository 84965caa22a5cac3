import type { BlobStore } from './store.js';

/** The store's folders whose blobs expire (inputs are refreshed whenever a job uses them again). */
const EXPIRING = ['inputs', 'results', 'previews', 'checkpoints', 'thumbs', 'frames'] as const;

/**
 * Removes blobs older than `keepMs` from the store (`nst serve --keep-days`):
 * inputs, results, previews, checkpoints, thumbnails and video frames. BullMQ removes the
 * job records themselves at the same age (removeOnComplete/removeOnFail),
 * and cancellation records expire in Redis. Returns how many it removed.
 */
export async function expireStored(store: BlobStore, keepMs: number, now = Date.now()): Promise<number> {
  let removed = 0;
  for (const folder of EXPIRING)
    for await (const blob of store.list(folder))
      if (now - blob.modified.getTime() > keepMs) {
        await store.delete(blob.key);
        removed++;
      }
  return removed;
}
