import type { Backend } from '@nst/core';
import { lossOf, type PreparedJob } from '@nst/job';

/**
 * Packing: jobs with equal packing keys (every option but their inputs and
 * outputs equal, the same output size and resume point: see packingKey in
 * @nst/job) run as one engine batch, as large as the memory estimate allows.
 */

export interface PackLimits {
  /** The most items in one engine batch. */
  readonly maxBatch: number;
  /** The engine memory a batch may use, in bytes. */
  readonly memoryBytes: number;
}

/**
 * How many jobs like `job` fit one batch: the most, up to maxBatch, whose
 * memory the backend estimates (Backend.estimateMemory, the estimate that
 * refuses a render) within memoryBytes; at least 1, so a single job always
 * runs (alone, it still meets the render's own memory check).
 */
export function batchCapacity(backend: Pick<Backend, 'estimateMemory'>, job: PreparedJob, limits: PackLimits): number {
  const final = job.steps[job.steps.length - 1];
  const fits = (batch: number) =>
    backend.estimateMemory({ ...job.size, batch, pooling: job.job.pooling, loss: lossOf(job.job), styleSizes: final.styleSizes }) <=
    limits.memoryBytes;
  let capacity = 1;
  while (capacity < limits.maxBatch && fits(capacity + 1)) capacity++;
  return capacity;
}

/** Splits items that share a key into batches of at most `capacity`, in their original order. */
export function packGroups<T>(items: readonly T[], keyOf: (item: T) => string, capacityOf: (item: T) => number): T[][] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key) ?? [];
    group.push(item);
    groups.set(key, group);
  }
  const batches: T[][] = [];
  for (const group of groups.values()) {
    const capacity = capacityOf(group[0]);
    for (let k = 0; k < group.length; k += capacity) batches.push(group.slice(k, k + capacity));
  }
  return batches;
}
