import { createHash } from 'node:crypto';
import { resolveSize, type Backend, type LossSpec } from '@nst/core';
import { fileCheckpointStore, itemCheckpointStore, probeImage, type RenderConfig, type RenderPlan } from '@nst/job';

/**
 * Packing: jobs that share an output size, a loss and the optimiser's
 * schedule can run as one engine batch (each item with its own content and
 * styles); the batch is as large as the memory estimate allows.
 */

/** The output size of a job (probing its content image when the size is a longest side). */
export async function jobSize(config: RenderConfig): Promise<{ width: number; height: number }> {
  if (config.size.kind === 'exact') return { width: config.size.width, height: config.size.height };
  const own = await probeImage(config.contents[0], 'content');
  return resolveSize(config.size, own.width, own.height);
}

/**
 * What must be equal for two jobs to share a batch: the session (size,
 * pooling, loss), the optimiser's schedule, and the iteration they start
 * from (a resumed job continues Adam's bias correction where it stopped).
 */
export function compatibilityKey(config: RenderConfig, size: { width: number; height: number }, startIteration: number): string {
  return JSON.stringify({
    size,
    pooling: config.pooling,
    loss: config.loss,
    adam: config.adam,
    iterations: config.iterations,
    printEvery: config.printEvery,
    saveEvery: config.saveEvery,
    checkpointEvery: config.checkpointEvery,
    startIteration,
  });
}

export interface PackLimits {
  /** The most items in one engine batch. */
  readonly maxBatch: number;
  /** The engine memory a batch may use, in bytes. */
  readonly memoryBytes: number;
}

/**
 * How many items of this size and loss fit one batch: the most, up to
 * maxBatch, whose memory the backend estimates (Backend.estimateMemory, the
 * estimate that refuses a render) within memoryBytes; at least 1, so a single
 * job always runs. A backend that plans its own memory (cuda: no estimate)
 * gets maxBatch; a batch it refuses is re-run job by job.
 */
export function batchCapacity(
  backend: Pick<Backend, 'estimateMemory'>,
  size: { width: number; height: number },
  loss: LossSpec,
  limits: PackLimits,
): number {
  const fits = (batch: number) => {
    const bytes = backend.estimateMemory({ ...size, batch, loss, styleSizes: [size] });
    return bytes <= limits.memoryBytes;
  };
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

/**
 * Joins the plans of single jobs (each a batch of 1, prepared by
 * prepareRender) into one engine batch. Each item keeps its own targets,
 * initial image, output and checkpoint, so that it can later resume alone
 * or in another batch.
 */
export function mergePlans(plans: readonly RenderPlan[]): RenderPlan {
  if (plans.length === 0) throw new Error('mergePlans needs at least one plan');
  const first = plans[0];
  if (plans.length === 1) return first;
  const sessionKey = (p: RenderPlan) => JSON.stringify({ ...p.session, batch: 1 });
  const scheduleKey = (p: RenderPlan) =>
    JSON.stringify([p.adam, p.iterations, p.printEvery, p.saveEvery, p.checkpointEvery, p.resume, p.preprocessing.name]);
  for (const p of plans) {
    if (p.session.batch !== 1) throw new Error('mergePlans joins plans of one item each');
    if (sessionKey(p) !== sessionKey(first) || scheduleKey(p) !== scheduleKey(first))
      throw new Error('mergePlans: the plans are not compatible');
  }
  const initialImages = new Float32Array(plans.length * first.initialImages.length);
  plans.forEach((p, k) => initialImages.set(p.initialImages, k * first.initialImages.length));
  return {
    ...first,
    session: { ...first.session, batch: plans.length },
    targets: plans.flatMap((p) => p.targets),
    initialImages,
    outPaths: plans.flatMap((p) => p.outPaths),
    fingerprint: createHash('sha256')
      .update(plans.map((p) => p.fingerprint).join(','))
      .digest('hex'),
    checkpointStore: itemCheckpointStore(plans.map((p) => p.checkpointStore ?? fileCheckpointStore(p.checkpointPath, p.fingerprint))),
  };
}
